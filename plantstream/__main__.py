from plantstream.cli import main

main()
