from musicbridge.cli import main

main()
