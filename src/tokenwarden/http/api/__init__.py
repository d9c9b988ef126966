"""tokenwarden.http.api"""
