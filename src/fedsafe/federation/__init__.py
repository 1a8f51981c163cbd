"""fedsafe.federation"""
