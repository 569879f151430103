"""Known-answer tests of both suites against the standards' published examples.

Sources of the expected values:
- SM3: GB/T 32905-2016 (GM/T 0004-2012) Appendix A, examples 1 and 2.
- SM4: GB/T 32907-2016 (GM/T 0002-2012) Appendix A, examples 1 and 2.
- SM4-GCM: RFC 8998 Appendix A.1.
- SM2: GB/T 32918.2-2016 (GM/T 0003.2-2012) Appendix A on its 256-bit test
  curve with ID ALICE123@YAHOO.COM, and GB/T 32918.5-2017 (GM/T 0003.5-2012)
  Appendix A on the recommended curve with ID 1234567812345678.
- SHA-256: FIPS 180-2 Appendix B.1 and B.2.
- Ed25519: RFC 8032 section 7.1, TESTs 1 and 2.
- AES-256-GCM: McGrew and Viega, "The Galois/Counter Mode of Operation",
  test cases 14 and 16 (also in NIST's GCM validation material).
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from waggle.governance.crypto import SignatureInvalid, get_suite
from waggle.governance.crypto.intl import Ed25519PrivateKey, Ed25519PublicKey
from waggle.governance.crypto.sm2 import (
    SM2_P256,
    Curve,
    Sm2PrivateKey,
    Sm2PublicKey,
    identity_digest,
    message_digest,
    sign_digest,
    verify_digest,
)

GM = get_suite("gm")
INTL = get_suite("intl")

# GB/T 32918.2 Appendix A: the 256-bit prime test curve.
TEST_CURVE = Curve(
    name="gbt32918-test-fp256",
    p=0x8542D69E4C044F18E8B92435BF6FF7DE457283915C45517D722EDB8B08F1DFC3,
    a=0x787968B4FA32C3FD2417842E73BBFEFF2F3C848B6831D7E0EC65228B3937E498,
    b=0x63E4C6D3B23B0C849CF84241484BFE48F61D59A5B16BA06E6E12D1DA27C5249A,
    gx=0x421DEBD61B62EAB6746434EBC3CC315E32220B3BADD50BDC4C4E6C147FEDD43D,
    gy=0x0680512BCBB42C07D47349D2153B70C4E5D7FDFCBFA36EA1A85841B9E46E09A2,
    n=0x8542D69E4C044F18E8B92435BF6FF7DD297720630485628D5AE74EE7C32E79B7,
)


def test_sm3_hashes_abc_as_in_gbt_32905_example_1():
    """SM3 of "abc" is the digest GB/T 32905 prints."""
    message = b"abc"

    digest = GM.hash(message)

    assert digest.hex() == (
        "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    )


def test_sm3_hashes_the_512_bit_message_of_gbt_32905_example_2():
    """SM3 of "abcd" sixteen times (one full block before padding) matches."""
    message = b"abcd" * 16

    digest = GM.hash(message)

    assert digest.hex() == (
        "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
    )


def test_sm4_encrypts_the_gbt_32907_block_once_and_a_million_times():
    """SM4 (the cipher under SM4-GCM) gives both GB/T 32907 example ciphertexts."""
    key = bytes.fromhex("0123456789abcdeffedcba9876543210")
    encryptor = Cipher(algorithms.SM4(key), modes.ECB()).encryptor()

    once = encryptor.update(key)
    block = once
    for _ in range(999_999):
        block = encryptor.update(block)

    assert once.hex() == "681edf34d206965e86b3e94f536e4246"
    assert block.hex() == "595298c7c6fd271f0402f804c33d3f66"


def test_sm4_gcm_seals_and_opens_the_rfc_8998_vector():
    """The gm suite's SM4-GCM reproduces RFC 8998 A.1 and opens it again."""
    key = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    nonce = bytes.fromhex("00001234567800000000ABCD")
    associated = bytes.fromhex("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2")
    plaintext = bytes.fromhex(
        "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD"
        "EEEEEEEEEEEEEEEEFFFFFFFFFFFFFFFFEEEEEEEEEEEEEEEEAAAAAAAAAAAAAAAA"
    )

    sealed = GM.seal(key, nonce, plaintext, associated)
    opened = GM.open(key, nonce, sealed, associated)

    assert sealed.hex().upper() == (
        "17F399F08C67D5EE19D0DC9969C4BB7D5FD46FD3756489069157B282BB200735"
        "D82710CA5C22F0CCFA7CBF93D496AC15A56834CBCF98C397B4024A2691233B8D"
        "83DE3541E4C2B58177E065A9BF7B62EC"
    )
    assert opened == plaintext


def test_sm2_signs_the_gbt_32918_2_example_on_its_test_curve():
    """Z, e, r and s match GB/T 32918.2 Appendix A for ALICE123@YAHOO.COM."""
    secret = 0x128B2FA8BD433C6C068C8D803DFF79792A519A55171B1B650C23661D15897263
    nonce = 0x6CB28D99385C175C94F94E934817663FC176D925DD72B727260DBAAE1FB2F96F
    key = Sm2PrivateKey(secret, TEST_CURVE)
    identity = b"ALICE123@YAHOO.COM"

    z = identity_digest(TEST_CURVE, key.public.point, identity)
    e = message_digest(TEST_CURVE, key.public.point, b"message digest", identity)
    r, s = sign_digest(TEST_CURVE, secret, e, nonce)

    assert key.public.point == (
        0x0AE4C7798AA0F119471BEE11825BE46202BB79E2A5844495E97C04FF4DF2548A,
        0x7C0240F88F1CD4E16352A73C17B7F16F07353E53A176D684A9FE0C6BB798E857,
    )
    assert z.hex().upper() == (
        "F4A38489E32B45B6F876E3AC2168CA392362DC8F23459C1D1146FC3DBFB7BC9A"
    )
    assert e.hex().upper() == (
        "B524F552CD82B8B028476E005C377FB19A87E6FC682D48BB5D42E3D9B9EFFE76"
    )
    assert (r, s) == (
        0x40F1EC59F793D9F49E09DCEF49130D4194F79FB1EED2CAA55BACDB49C4E755D1,
        0x6FC6DAC32C5D5CF10C77DFB20F7C2EB667A457872FB09EC56327A67EC7DEEBE7,
    )
    assert verify_digest(TEST_CURVE, key.public.point, e, r, s)


def test_sm2_signs_the_gbt_32918_5_example_on_the_recommended_curve():
    """The recommended-curve example (ID 1234567812345678) gives its r and s."""
    secret = 0x3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8
    nonce = 0x59276E27D506861A16680F3AD9C02DCCEF3CC1FA3CDBE4CE6D54B80DEAC1BC21
    key = Sm2PrivateKey(secret)

    z = identity_digest(SM2_P256, key.public.point, b"1234567812345678")
    e = message_digest(
        SM2_P256, key.public.point, b"message digest", b"1234567812345678"
    )
    r, s = sign_digest(SM2_P256, secret, e, nonce)

    assert key.public.point == (
        0x09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020,
        0xCCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13,
    )
    assert z.hex().upper() == (
        "B2E14C5C79C6DF5B85F4FE7ED8DB7A262B9DA7E07CCB0EA9F4747B8CCDA8A4F3"
    )
    assert (r, s) == (
        0xF5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3,
        0xB1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA,
    )


def test_sm2_public_key_accepts_the_standard_signature_and_refuses_a_changed_one():
    """The example signature verifies through the public API; s + 1 does not."""
    public = Sm2PublicKey(
        0x09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020,
        0xCCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13,
    )
    r = 0xF5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3
    s = 0xB1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA
    digest = message_digest(
        SM2_P256, public.point, b"message digest", b"1234567812345678"
    )

    accepted = verify_digest(SM2_P256, public.point, digest, r, s)
    refused = verify_digest(SM2_P256, public.point, digest, r, s + 1)

    assert (accepted, refused) == (True, False)


def test_sha256_hashes_the_fips_180_2_examples():
    """SHA-256 of "abc" and of the 448-bit message match FIPS 180-2."""
    long_message = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"

    short, long = INTL.hash(b"abc"), INTL.hash(long_message)

    assert short.hex() == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    assert long.hex() == (
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
    )


def test_ed25519_reproduces_rfc_8032_test_1():
    """TEST 1 (empty message): public key and signature match RFC 8032."""
    key = Ed25519PrivateKey(
        bytes.fromhex(
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
        )
    )

    signature = key.sign(b"")

    assert key.public_key().raw.hex() == (
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    )
    assert signature.hex() == (
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    )


def test_ed25519_verifies_rfc_8032_test_2_and_refuses_another_message():
    """TEST 2's signature of 0x72 verifies; the same signature of 0x73 does not."""
    public = Ed25519PublicKey(
        bytes.fromhex(
            "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"
        )
    )
    signature = bytes.fromhex(
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
        "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
    )

    public.verify(b"\x72", signature)

    with pytest.raises(SignatureInvalid):
        public.verify(b"\x73", signature)


def test_aes_256_gcm_reproduces_gcm_test_cases_14_and_16():
    """AES-256-GCM gives the GCM paper's ciphertexts and tags (cases 14, 16)."""
    key16 = bytes.fromhex(
        "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308"
    )
    plaintext16 = bytes.fromhex(
        "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
        "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39"
    )
    associated16 = bytes.fromhex("feedfacedeadbeeffeedfacedeadbeefabaddad2")

    nonce16 = bytes.fromhex("cafebabefacedbaddecaf888")

    case14 = INTL.seal(bytes(32), bytes(12), bytes(16), b"")
    case16 = INTL.seal(key16, nonce16, plaintext16, associated16)
    opened16 = INTL.open(key16, nonce16, case16, associated16)

    assert case14.hex() == (
        "cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919"
    )
    assert case16.hex() == (
        "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
        "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662"
        "76fc6ece0f4e1768cddf8853bb2d551b"
    )
    assert opened16 == plaintext16
