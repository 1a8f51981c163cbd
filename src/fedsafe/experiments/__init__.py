"""fedsafe.experiments"""
