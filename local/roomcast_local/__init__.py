"""roomcast's local stack and developer CLI. Not shipped to Lambda."""
