from p2pq.cli import main

main(prog_name="p2pq")
