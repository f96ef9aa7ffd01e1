print("kubesim: not yet implemented")
