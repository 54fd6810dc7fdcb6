"""The client SDK: JSON-RPC client, typed chain reads, extrinsic building, keystore."""
