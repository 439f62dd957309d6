"""The HTTP face: the room-screen page (static, no CDN), Server-Sent Events, session listing and exports.

A thin adapter over the sessions and event logs the gRPC face reads (appliance.delivery);
it runs on aiohttp in the daemon's event loop.
"""
