from mlpflow.cli import main

main()
