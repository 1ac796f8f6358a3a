from workbench.app import main

main()
