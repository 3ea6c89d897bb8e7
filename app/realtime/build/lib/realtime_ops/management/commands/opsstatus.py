import logging
import time

from django.core.management.base import BaseCommand

from realtime_ops import render
from realtime_ops.figures import collect_for_this_app


class Command(BaseCommand):
    help = (
        "Print the ops dashboard's figures: streams per Pushpin node, publish rate (sampled "
        "over --sample seconds), items accepted and failed per node (what `make status` shows)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--sample", type=float, default=2.0, help="seconds between readings")

    def handle(self, sample, **options):
        # The publisher's node list is logged at INFO; here it is in the table already.
        logging.getLogger("realtime.cluster").setLevel(logging.WARNING)
        first = collect_for_this_app()
        time.sleep(max(0.0, sample))
        second = collect_for_this_app()
        self.stdout.write(render.table(second, second.rates(first)))
