"""tokenwarden.ports"""
