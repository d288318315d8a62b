from services.providers.app import main

main()
