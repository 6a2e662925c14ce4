"""Operations: configuration, logs, metrics, deployment checks and the background work pool."""
