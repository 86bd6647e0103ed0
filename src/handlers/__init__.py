"""The functions' entry points, one module each (the template's `Handler`). Each is imported through this
package, so the collector is held off from here to the end of the function's module (shared.wiring.loading)."""

from shared.wiring.loading import loading

loading()
