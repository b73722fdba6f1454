"""The batched scoring engine: loader, device, resumable parts, distributed runs."""
