from homec.cli import main

main()
