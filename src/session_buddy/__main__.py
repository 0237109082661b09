from session_buddy.cli import main

main()
