print("fpindex-controller: not yet wired")
