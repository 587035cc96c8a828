print("portalctl")
