"""fedseg's Flower app: ServerApp and ClientApp wiring around the ``federation`` package."""
