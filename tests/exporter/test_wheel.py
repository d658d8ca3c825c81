"""exporter.wheel: slots fire once, in order, and a slot whose deadlines all ended is never woken for."""

from __future__ import annotations

import asyncio

from exporter.wheel import SLOT, Wheel, slot_of


class _Entry:
    run_seq = 1


def test_slots_fire_in_order_and_dropped_deadlines_cost_no_wake_up() -> None:
    fired: list[tuple[int, int, int]] = []  # (slot, starts, deadlines)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        wheel = Wheel(lambda starts, deadlines, at: fired.append((round(at / SLOT), len(starts), len(deadlines))))
        wheel.loop = loop
        now = slot_of(loop.time())
        a, b = _Entry(), _Entry()
        # A deadline alone in the earliest slot, then dropped (its run ended): the
        # timer moves on to the next slot with work and the slot never fires.
        k = wheel.add_deadline(now + 3, a)
        wheel.add_start(now + 6, b)
        wheel.add_deadline(now + 6, b)
        wheel.add_deadline(now + 9, a)
        wheel.add_deadline(now + 9, b)
        wheel.drop_deadline(k)
        wheel.drop_deadline(now + 9)  # one of two: the slot still fires, with both items
        await asyncio.sleep(15 * SLOT)
        wheel.drop_deadline(now + 6)  # after its slot fired: a no-op
        fired[:] = [(slot - now, starts, deadlines) for slot, starts, deadlines in fired]
        wheel.clear()

    asyncio.run(main())
    assert fired == [(6, 1, 1), (9, 0, 2)]
