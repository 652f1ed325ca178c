from rtune.cli import main

main()
