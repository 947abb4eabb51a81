from pytest_vmcontainer.cli import main

raise SystemExit(main())
