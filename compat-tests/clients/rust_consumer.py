"""A Python consumer of a Rust producer (examples/producer.rs): gets items
from get_task until None and reports the repr of each."""
import fmclient


def main():
    m = fmclient.connect()
    task = m.get_task()
    reprs = []
    while True:
        item = task.get(timeout=60)
        if item is None:
            break
        reprs.append(repr(item))
    fmclient.emit({'reprs': reprs})


if __name__ == '__main__':
    main()
