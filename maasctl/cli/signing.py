"""Signing commands: sign, keygen (verify --key lives with verify in registry.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from maasctl.cli import render
from maasctl.cli._complete import complete_ref
from maasctl.cli._options import JsonOpt, state


def sign(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(metavar="REF", help="NAME@VERSION (or NAME@ALIAS, NAME) to sign.",
                                       autocompletion=complete_ref)],
    key: Annotated[Path, typer.Option("--key", metavar="PRIVATE.pem", dir_okay=False,
                                      help="EC private key (P-256, P-384 or P-521), PEM, unencrypted.")],
    json_out: JsonOpt = False,
) -> None:
    """Sign a stored version offline with OpenSSF model-signing.

    Needs: pip install 'maasctl[sign]'.
    The Sigstore bundle is kept with the version (maas.sig, outside the signed files) and travels in
    packages. Replaces an earlier signature. Check with: maasctl verify REF --key PUBLIC.pem

    Example: maasctl sign iris@3 --key release.pem
    """
    from maasctl.store.signing import short, sign_version

    info, fingerprint = sign_version(state(ctx).store, ref, key)
    if json_out:
        render.emit_json({"ref": info.ref, "signed": True, "key_fingerprint": fingerprint})
    else:
        render.message(f"signed {info.ref} with key {short(fingerprint)}")
        print(info.ref)


def keygen(
    private: Annotated[Path, typer.Argument(metavar="PRIVATE.pem", help="Where to write the private key (mode 0600).",
                                            dir_okay=False)],
    public: Annotated[Path, typer.Argument(metavar="PUBLIC.pem", help="Where to write the public key.",
                                           dir_okay=False)],
    curve: Annotated[str, typer.Option("--curve", help="P-256, P-384 or P-521.")] = "P-256",
    json_out: JsonOpt = False,
) -> None:
    """Make an EC key pair for `maasctl sign`.

    The private key is created 0600; an existing file is never overwritten.

    Example: maasctl keygen release.pem release.pub.pem
    """
    from maasctl.store.signing import generate_key, short

    fingerprint = generate_key(private, public, curve)
    if json_out:
        render.emit_json({"private_key": str(private), "public_key": str(public), "key_fingerprint": fingerprint})
    else:
        render.message(f"wrote {private} (private, mode 0600) and {public} (public); key {short(fingerprint)}")


def attach(app: typer.Typer) -> None:
    app.command("sign")(sign)
    app.command("keygen")(keygen)
