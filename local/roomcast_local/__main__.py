from roomcast_local.cli import main

raise SystemExit(main())
