"""The backend layer: every public call validates its inputs here once and runs on one backend."""
