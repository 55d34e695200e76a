from vouchsim.server.cli import main

main()
