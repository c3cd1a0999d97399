from api.cli.lane import main

main()
