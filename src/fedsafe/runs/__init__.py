"""fedsafe.runs"""
