"""The harness's own reference runs (AE, VAEs, beta search, the beta band), built once and cached."""
