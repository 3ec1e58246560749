from heartwatch.cli.main import main

main()
