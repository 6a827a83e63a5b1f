"""`maasctl deploy kserve|k8s`: manifests that serve a version of an S3 store on Kubernetes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from maasctl.cli import render
from maasctl.cli._complete import complete_model
from maasctl.cli._options import JsonOpt, ref_argument, state

if TYPE_CHECKING:
    from maasctl.deploy import Plan, S3Settings

deploy_app = typer.Typer(help="Kubernetes / KServe manifests serving a version of an S3 store.",
                         no_args_is_help=True)

RefArg = Annotated[str, ref_argument()]
OutOpt = Annotated[Path | None, typer.Option(
    "--output", "-o", metavar="DIR", help="Write one JSON file per object into DIR (kubectl apply -f DIR); "
                                              "default: one List document on stdout (kubectl apply -f -).")]
NameOpt = Annotated[str | None, typer.Option(
    "--name", metavar="NAME", help="Kubernetes object name [default: the model name, made a DNS label].")]
EndpointOpt = Annotated[str | None, typer.Option(
    "--s3-endpoint", metavar="URL", help="S3 endpoint as the cluster reaches it [default: $AWS_ENDPOINT_URL, "
                                         "else AWS S3].")]
RegionOpt = Annotated[str | None, typer.Option(
    "--s3-region", metavar="REGION", help="S3 region [default: $AWS_REGION, $AWS_DEFAULT_REGION, us-east-1].")]


def _settings(endpoint: str | None, region: str | None, verify_ssl: bool = True) -> S3Settings:
    from maasctl import deploy

    return deploy.S3Settings.from_env(endpoint, region, verify_ssl)


def _emit(plan: Plan, out: Path | None, json_out: bool, next_step: str) -> None:
    from maasctl.deploy.manifests import as_list, write_objects

    if out is None:
        render.emit_json({**plan.summary, "objects": as_list(plan.objects)} if json_out else as_list(plan.objects))
        return
    paths = write_objects(plan.objects, out)
    if json_out:
        render.emit_json({**plan.summary, "files": [str(p) for p in paths]})
    else:
        for p in paths:
            print(p)
    render.message(f"wrote {len(paths)} objects to {out}; {next_step}")


def kserve(
    ctx: typer.Context,
    ref: RefArg,
    output: OutOpt = None,
    name: NameOpt = None,
    s3_endpoint: EndpointOpt = None,
    s3_region: RegionOpt = None,
    s3_verify_ssl: Annotated[bool, typer.Option("--s3-verify-ssl/--s3-no-verify-ssl",
                                                help="Whether KServe checks the endpoint's certificate.")] = True,
    json_out: JsonOpt = False,
) -> None:
    """A KServe InferenceService pinned to the version REF names now.

    It runs KServe's TensorFlow Serving runtime. The version is copied server-side into an immutable prefix holding only it; re-run after moving an alias
    to roll the pods onto the new version (or back). Create the Secret NAME-s3 with AWS_ACCESS_KEY_ID and
    AWS_SECRET_ACCESS_KEY first.

    Example: maasctl deploy kserve iris@prod --store s3://models/reg -o deploy/
    """
    from maasctl.deploy import kserve_plan

    plan = kserve_plan(state(ctx).store, ref, name=name, s3=_settings(s3_endpoint, s3_region, s3_verify_ssl))
    render.message(f"{plan.summary['ref']} pinned at {plan.summary['storage_uri']}")
    _emit(plan, output, json_out, "apply with: kubectl apply -f DIR")


def k8s(
    ctx: typer.Context,
    ref: RefArg,
    replicas: Annotated[int, typer.Option("--replicas", metavar="N", min=1,
                                          help="Replicas (the autoscaler's minimum).")] = 2,
    max_replicas: Annotated[int, typer.Option("--max-replicas", metavar="N", min=1,
                                              help="The autoscaler's maximum.")] = 10,
    image: Annotated[str, typer.Option("--image", metavar="IMAGE",
                                       help="Container image with maasctl[s3] (see the Dockerfile).")]
    = "maasctl:latest",
    output: OutOpt = None,
    name: NameOpt = None,
    s3_endpoint: EndpointOpt = None,
    s3_region: RegionOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """A fleet of `maasctl serve REF` replicas on Kubernetes.

    A Deployment whose replicas follow REF in the S3 store, its Service, HorizontalPodAutoscaler and
    PodDisruptionBudget.

    Create the Secrets NAME-s3 (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) and NAME-token (token) first.

    Example: maasctl deploy k8s iris@prod --store s3://models/reg --replicas 3
    """
    from maasctl.deploy import FleetSpec, fleet_plan

    store = state(ctx).store
    spec = FleetSpec(ref=ref, store=store.location, replicas=replicas, max_replicas=max_replicas, image=image)
    plan = fleet_plan(store, ref, spec, name=name, s3=_settings(s3_endpoint, s3_region))
    _emit(plan, output, json_out, "apply with: kubectl apply -f DIR")


def gc(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="Model name.", autocompletion=complete_model)],
    keep: Annotated[int, typer.Option("--keep", metavar="K", help="Keep the K most recently deployed prefixes.")]
    = 3,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be removed.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Remove old KServe deployment prefixes of a model.

    Keeps the K most recently deployed (the last `deploy kserve` always) and those of the versions a re-deploy
    would pin now (the latest and every alias's); prints the removed storage URIs.

    Example: maasctl deploy gc iris --store s3://models/reg --keep 3 --dry-run
    """
    from maasctl.deploy.publish import gc_deployments

    report = gc_deployments(state(ctx).store, name, keep=keep, dry_run=dry_run)
    if json_out:
        render.emit_json(report.to_json())
        return
    for uri in report.removed:
        print(uri)
    render.message(f"{'would remove' if dry_run else 'removed'} {len(report.removed)} deployment prefix(es) of "
                   f"{name}; kept {len(report.kept)}")


def tfjob(
    ctx: typer.Context,
    config: Annotated[Path, typer.Argument(metavar="CONFIG", help="The training config (TOML); it goes into a "
                                           "ConfigMap.")],
    workers: Annotated[int, typer.Option("--workers", metavar="N", min=1,
                                         help="Training pods: one Chief and N-1 Workers.")] = 2,
    image: Annotated[str, typer.Option("--image", metavar="IMAGE",
                                       help="Container image with maasctl[s3] and TensorFlow.")] = "maasctl:latest",
    output: OutOpt = None,
    name: NameOpt = None,
    s3_endpoint: EndpointOpt = None,
    s3_region: RegionOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """A Kubeflow TFJob (kubeflow.org/v1) running `maasctl train CONFIG` on N pods.

    The Training Operator sets TF_CONFIG in each pod; the Chief records the run in the store (--store
    s3://BUCKET/PREFIX; the pods read it, and S3 credentials, from the Secret NAME-s3). The config's data
    must be reachable from the pods (s3://, or a path in the image).

    Example: maasctl deploy tfjob iris.toml --workers 4 --store s3://models/reg
    """
    from maasctl.deploy import tfjob_plan

    store = state(ctx).store_path
    plan = tfjob_plan(config, workers=workers, image=image, store=store, name=name,
                      s3=_settings(s3_endpoint, s3_region))
    if not store:
        render.message("warning: no --store: the run stays in the Chief pod's filesystem and is lost with it; "
                       "pass --store s3://BUCKET/PREFIX")
    _emit(plan, output, json_out, "apply with: kubectl apply -f DIR")


def attach(app: typer.Typer) -> None:
    deploy_app.command("kserve")(kserve)
    deploy_app.command("k8s")(k8s)
    deploy_app.command("gc")(gc)
    deploy_app.command("tfjob")(tfjob)
    app.add_typer(deploy_app, name="deploy")
