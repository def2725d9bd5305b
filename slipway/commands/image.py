"""`build.py image`: build HEAD's release image (and its base, when the base's inputs changed)."""
from slipway.config import load_project
from slipway.engine import docker_client
from slipway.git import read_git_facts
from slipway.image import build_image


def add_arguments(parser, verb):
    parser.add_argument("--allow-dirty", action="store_true",
                        help="build from a dirty tree; tags get -dirty and only `local` accepts them")


def run(args, reporter):
    facts = read_git_facts(args.root)
    project = load_project(facts.root)
    result = build_image(docker_client(), project, facts, reporter, allow_dirty=args.allow_dirty)
    reporter.result(result, human="\n".join(f"{project.config.image.name}:{t}" for t in result["tags"]))
