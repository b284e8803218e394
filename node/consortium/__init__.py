"""The consortium round on the node stack: the hub's service and daemon, the participant's
client (layer group rank 3, beside node/net)."""
