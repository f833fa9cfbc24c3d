"""Deprecated alias: the balance plan and class weights are in :mod:`genaug.sampling`."""

from genaug._moved import moved_to

__getattr__ = moved_to("genaug.balance", "genaug.sampling")
