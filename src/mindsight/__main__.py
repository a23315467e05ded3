from mindsight.cli import main

main()
