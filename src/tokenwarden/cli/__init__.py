"""tokenwarden.cli"""
