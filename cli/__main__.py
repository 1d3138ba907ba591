from bertq.cli.main import main

main()
