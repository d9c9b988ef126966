"""tokenwarden.http.compat"""
