from gftune.cli import main

main()
