from services.brokerage.app import main

main()
