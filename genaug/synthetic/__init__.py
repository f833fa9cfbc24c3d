"""Deprecated alias: the cache format is :mod:`genaug.cache`, mixing is :mod:`genaug.sampling`."""

from genaug._moved import moved_to

__getattr__ = moved_to("genaug.synthetic", "genaug.cache", "genaug.sampling")
