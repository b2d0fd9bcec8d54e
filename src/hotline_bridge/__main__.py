from hotline_bridge.runtime.cli import main

raise SystemExit(main())
