# A preprocessing script that fails inside preprocess(): an unknown node in a gs call.
import graphsurgeon as gs  # noqa: F401


def preprocess(dynamic_graph):
    dynamic_graph.remove(dynamic_graph.node_map["no/such/node"])
