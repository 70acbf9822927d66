"""Preprocessing scripts written the graphsurgeon way, and the TF graphs they are tested on."""
