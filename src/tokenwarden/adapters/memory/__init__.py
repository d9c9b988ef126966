"""tokenwarden.adapters.memory"""
