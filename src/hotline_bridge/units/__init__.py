"""Handling units (承办单位): assignment by territory and function, time limits, supervision."""
