from .al.cli import main

raise SystemExit(main())
