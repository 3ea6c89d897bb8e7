"""A TCP relay to run on a host (python3 only, as every Ansible-managed host has): for ports
that only that host may reach. Used by the Ansible tests and by `make verify` on inventories
whose hosts are not reached over SSH."""

# Each LOCAL:ADDRESS:PORT argument listens on LISTEN:LOCAL and forwards every connection to
# ADDRESS:PORT, from that host: python3 -c RELAY_SCRIPT LISTEN LOCAL:ADDRESS:PORT...
RELAY_SCRIPT = """
import asyncio, sys

async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()

def forward(address, port):
    async def handle(reader, writer):
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(address, port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))
    return handle

async def main(listen, routes):
    servers = []
    for route in routes:
        local, address, port = route.split(":")
        servers.append(await asyncio.start_server(forward(address, int(port)), listen, int(local)))
    await asyncio.gather(*(server.serve_forever() for server in servers))

asyncio.run(main(sys.argv[1], sys.argv[2:]))
"""
