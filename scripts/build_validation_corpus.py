#!/usr/bin/env python3
"""Rebuilds data/validation/ (the multi-source validation corpus) from the fetched originals.

The corpus is a set of small retrieval benchmarks ("sources"), one folder per source:
data/validation/<source>/images/*.jpg and data/validation/<source>/groups.csv (header
`image,group`, empty group for a distractor), plus data/validation/provenance.csv. See
data/validation/README.md for the protocol and the licences.

Every output image is made from one original file of a public repository snapshot or of a Debian
package. The MANIFEST below names each original (origin, path inside the origin, group) and its
sha256; the build stops if any original is missing or differs. Processing (same as
../shared/data/landmarks-dev): decode with Pillow, apply the EXIF orientation, convert to 8-bit
RGB, downscale with Lanczos so that the longer side is at most 640 px (never upscale, aspect ratio
kept), save as baseline JPEG quality 90 without any metadata (no EXIF, no ICC profile). A manifest
row may end with `rot90`, `rot180` or `rot270`: the picture is then turned counter-clockwise by that
angle after the EXIF orientation (used for the four OpenCV sfm sample photos, which are stored lying
on their side without an orientation tag). The output
is deterministic for a given Pillow/libjpeg build (this corpus was made with Pillow 13.0.0).

How the originals were obtained (nothing is downloaded by this script):

* GitHub repositories (ORIGINS with kind "git"): a snapshot of each repository at the commit given
  in ORIGINS, e.g. `git clone https://github.com/<repo> <mirrors>/<owner>+<name>` followed by
  `git -C <mirrors>/<owner>+<name> checkout <commit>`. The script also reads bare git
  directories (`<mirrors>/<owner>+<name>/repo` or `<mirrors>/<owner>+<name>` itself), in which case
  it takes each file at the recorded commit (`git show <commit>:<path>`), falling back to HEAD when
  the commit is not in the snapshot (the sha256 check still applies).
* The Debian package opencv-doc 4.6.0+dfsg-12 (Debian 12 "bookworm", main, architecture all):
  `apt-get download opencv-doc=4.6.0+dfsg-12` into the --debs directory. The script reads the
  .deb (an ar archive holding data.tar.xz) itself; dpkg is not needed.

Usage:
    python3 scripts/build_validation_corpus.py --mirrors DIR --debs DIR [--out data/validation]
    python3 scripts/build_validation_corpus.py --mirrors DIR --debs DIR --verify
        (rebuilds in memory and compares byte for byte with the files under --out)
    python3 scripts/build_validation_corpus.py --summary   (counts from the manifest only)

Requires Python >= 3.9 and Pillow (`python3 -m venv target/corpus-venv &&
target/corpus-venv/bin/pip install pillow`); git when reading bare git directories.
"""

import argparse
import csv
import hashlib
import io
import lzma
import os
import subprocess
import sys
import tarfile
from collections import OrderedDict

MAX_SIDE = 640
JPEG_QUALITY = 90

# Origin key -> where it comes from. "licence" is the licence of the files as stated by the origin
# (repository licence file or per-folder notice); see data/validation/README.md.
ORIGINS = {
    "boofcv-data": dict(kind="git", repo="lessthanoptimal/BoofCV-Data", commit="cc6d8adf795be2e0c6cc12b42b9ed0c92cab0fcf",
                        licence="CC-BY-4.0 (README.TXT: content by Peter Abeles); example/triple: CC-BY-SA-4.0 (triple/readme.md); "
                                "example/recognition/pixabay: CC0 / Pixabay (pixabay/readme.md)"),
    "opencv-doc": dict(kind="deb", package="opencv-doc", version="4.6.0+dfsg-12", file="opencv-doc_4.6.0+dfsg-12_all.deb",
                       prefix="./usr/share/doc/opencv-doc/examples/",
                       licence="Apache-2.0 AND BSD-3-Clause (debian/copyright, Files: *); OpenCV samples/data and contrib samples"),
    "opencv-contrib": dict(kind="git", repo="opencv/opencv_contrib", commit="2a5154a4479e841aa1282ef83d139c4870d17b8f", licence="Apache-2.0"),
    "aliked": dict(kind="git", repo="Shiaoming/ALIKED", commit="683d7c65197395c0b3f01ebe76e1084a27e73a65", licence="BSD-3-Clause"),
    "cotr": dict(kind="git", repo="ubc-vision/COTR", commit="5c9363f1ca5c1825d999f875e8eb58914a64b01d", licence="Apache-2.0"),
    "gim": dict(kind="git", repo="xuelunshen/gim", commit="f09105a0555eef5c93db032d97b9e3d8a4cccb20", licence="MIT"),
    "roma": dict(kind="git", repo="Parskatt/RoMa", commit="a1494f87ab85485ad8a92a981876ca837e2334e4", licence="MIT"),
    "glue-factory": dict(kind="git", repo="cvg/glue-factory", commit="2d17e3b3bd7d30f0c828d4c4d3eac4ecefbf283d", licence="Apache-2.0"),
    "xfeat": dict(kind="git", repo="verlab/accelerated_features", commit="e92685f57f8318b18725c5c8c0bd28c7fe188d9a", licence="Apache-2.0"),
    "vismatch": dict(kind="git", repo="alexstoken/image-matching-models", commit="c73ccd6619f66851117d9f33baf29d96399d9340", licence="BSD-3-Clause"),
    "dedode": dict(kind="git", repo="Parskatt/DeDoDe", commit="6d156183f4dc84cd704ae779eebc8350995c5b06", licence="MIT"),
    "gluestick": dict(kind="git", repo="cvg/GlueStick", commit="7d816730ef939caa1c61e2564eceda77304874fa", licence="MIT"),
    "dim": dict(kind="git", repo="3DOM-FBK/deep-image-matching", commit="74d7bd55ef52e961e25b60c203383fbac60db378", licence="BSD-3-Clause"),
    "opensfm": dict(kind="git", repo="mapillary/OpenSfM", commit="238744cdf3b5d50149c50d136a87f7fea25ad5cd", licence="BSD-2-Clause"),
    "kapture": dict(kind="git", repo="naver/kapture", commit="5abafb9d56f91d8ab33917e1c8b646da2731b30f", licence="BSD-3-Clause"),
    "vlfeat": dict(kind="git", repo="vlfeat/vlfeat", commit="1b9075fc42fe54b42f0e937f8b9a230d8e2c7701", licence="BSD-2-Clause"),
    "buddha": dict(kind="git", repo="alicevision/dataset_buddha", commit="9067f679eb5a772c3e818b7a12dc35882c071858", licence="CC-BY-4.0"),
}

# source origin path-in-origin group(- = distractor) sha256-of-original [rotation]
MANIFEST = """
boofcv boofcv-data example/triple/bobcats_01.jpg bcv-bobcats eb4696bcfad4ebbdbe88f75af08492fa6387f2fe675601c289af5ce421019db9
boofcv boofcv-data example/triple/bobcats_02.jpg bcv-bobcats 0d7867cc5adadc75907f2d6d06b4b03b0e2cc15ca2774a7ee9987ad288b47534
boofcv boofcv-data example/triple/bobcats_03.jpg bcv-bobcats 885c2adb0b637a6086c30748f0c383ca457e0c763f95d8fc57f97504f3112026
boofcv boofcv-data example/triple/books_01.jpg bcv-books 473b1c84c08193cd57043f92dffea9138e4df9e8fd7986101ac27e49ec802d95
boofcv boofcv-data example/triple/books_02.jpg bcv-books 42d8d92562237d529e4f9dc5b07008b0fd6494661451360e5541747696b9f028
boofcv boofcv-data example/triple/books_03.jpg bcv-books 58f2fb314f0d179907bfd3e1dc55ad79c65a5f412c9601796379416a77235c84
boofcv boofcv-data example/triple/chicken_01.jpg bcv-chicken 2463c4c9987b531c76a19a8885d99f82c9d384d8325e08106b823461a9d9d896
boofcv boofcv-data example/triple/chicken_02.jpg bcv-chicken 38b01a7477fb25932567531d145538d7db450b6661f47ecc5c4d61e4c88b05b2
boofcv boofcv-data example/triple/chicken_03.jpg bcv-chicken 2ef0de998be9ff89a9cbb0efe4e45987120ccbd197def1f08ef706a1504a0045
boofcv boofcv-data example/triple/mono_wall_01.jpg bcv-mono-wall 2344b645f4cf864df8e5f8e66c0c2967a481814a4b8acaaeb01b033f3d53538f
boofcv boofcv-data example/triple/mono_wall_02.jpg bcv-mono-wall 40e88ba34b9d5718f31e6c4be4bce3c0c1f8be4a21c5ce78dd12435922de39e9
boofcv boofcv-data example/triple/mono_wall_03.jpg bcv-mono-wall 0623f8865557d86c55cb6cec8c847530927537a90536b832ff0a0be3be764bf3
boofcv boofcv-data example/triple/pebbles_01.jpg bcv-pebbles ebc300d2844d8f6d54b00bcfdfda3825d29ecf9171e7692fdd7f6237061f3e24
boofcv boofcv-data example/triple/pebbles_02.jpg bcv-pebbles f5a1fe15d991e2a3df7083d07d7b94869baebb30274242dcda8171ffff5ee53f
boofcv boofcv-data example/triple/pebbles_03.jpg bcv-pebbles dcde784f97493eb159a904590a1716b63e0e0b81341ac40506cb0d3e14752b74
boofcv boofcv-data example/triple/rock_leaves_01.jpg bcv-rock-leaves 9af268370b9912a9acbb99d855a7b03d64e6011d42a01f8da3a8a1c111cbdfb8
boofcv boofcv-data example/triple/rock_leaves_02.jpg bcv-rock-leaves 90eec3825b00e0cc059199506f20b8b0f2a4839f18129d7f71c5595709b9ff95
boofcv boofcv-data example/triple/rock_leaves_03.jpg bcv-rock-leaves f8b2155af3773a8cbda759e572b04791b5d090da870a7571c2b3ced17fc4e130
boofcv boofcv-data example/triple/rockview_01.jpg bcv-rockview 82fe4af0768f77a912a8f614cecfd47160c53623f66a69ab67a2449777de5b21
boofcv boofcv-data example/triple/rockview_02.jpg bcv-rockview aea38c5c6648357e25f7feb5ed68404ce69f25fa7a4bc0b09948bcc2442e5dfb
boofcv boofcv-data example/triple/rockview_03.jpg bcv-rockview e486f5d842cd542eac7b84b2f6fc7cadec7d316067040880a6916b63e3795113
boofcv boofcv-data example/triple/skull_01.jpg bcv-skull 71a004cb229c6f46453afe99a69a34792d5854d4932d66c33ec1dd9670bdedc7
boofcv boofcv-data example/triple/skull_02.jpg bcv-skull 0ab8d953259a4e4fe0b1539ae5cce1b7b9e7ca69953cbb93985246b10d063105
boofcv boofcv-data example/triple/skull_03.jpg bcv-skull 3ba2e9dd854ec35b13f7fdf03557afbefc6a02bce9a03f13fed466e18b86164a
boofcv boofcv-data example/triple/triflowers_01.jpg bcv-triflowers d4ecb899bbd0cf7907b7b8228f97159cb0c67694aeb062f1b1e056898bbe9e8d
boofcv boofcv-data example/triple/triflowers_02.jpg bcv-triflowers 416b57091526a3d062d49d18c88f1f5ce46dda19e7a3c402a58e688dbffd8ab6
boofcv boofcv-data example/triple/triflowers_03.jpg bcv-triflowers 043834b045ad8cf82a5129f4ffe463e0aff66b3dd12039b9f582e3968640fb2b
boofcv boofcv-data example/triple/turkey_01.jpg bcv-turkey f9c78c612b132ad9d2d865b720f5ecb53fc4dd14cd679bb6a3bf84860a3a3a1b
boofcv boofcv-data example/triple/turkey_02.jpg bcv-turkey 266e5dfbe852938825b6b237adcb9695c28809d4e012cacb25689b299a7d95f6
boofcv boofcv-data example/triple/turkey_03.jpg bcv-turkey ff9f61de92bc12018cc9d337c9bf571afcdfcdfef36b59328418ccca7af03dc5
boofcv boofcv-data example/stitch/apartment_building_01.jpg bcv-apartment-building 9bdf68a9a0a03f3c25224857486641bf755129769fde02fcc34d2a581b7c90cf
boofcv boofcv-data example/stitch/apartment_building_02.jpg bcv-apartment-building a97029d9d476c777ffabcd7546736999eeb0726f5230660469a3bdcd6b790e17
boofcv boofcv-data example/stitch/cave_01.jpg bcv-cave f6d9a306325798e2174db3300e1e55112355644986ceb40d5ca72d4e4d5d303e
boofcv boofcv-data example/stitch/cave_02.jpg bcv-cave def2a400e744bd1e5ceb6f22c19a329f21683841d49551fcdf0a15dfc27d9165
boofcv boofcv-data example/stitch/grass_rotate_01.jpg bcv-grass edacdc6ca7d12a13cded7767f0f10b4887d9df317b2c6c629fb9d3ec5e68f77b
boofcv boofcv-data example/stitch/grass_rotate_02.jpg bcv-grass de9a7c3a68e52a9418f565e976efb2e027dc8b232ac1ced5e600952c6d06f701
boofcv boofcv-data example/stitch/grass_rotate_03.jpg bcv-grass aaf642d3fb2893a1e0b9b2039d2c058fb365bec2bded64d93c5e51f88b6ba21b
boofcv boofcv-data example/stitch/grass_rotate_04.jpg bcv-grass 46ce0ddd659e03e453abf981ae79363f3422cf6fae8a37f3e5869f9a80b2f957
boofcv boofcv-data example/stitch/kayak_01.jpg bcv-kayak-river b12a5f2036a2600620fc19cd3352e9f7da046243394fe81da8fbbbd285e3fbdc
boofcv boofcv-data example/stitch/kayak_02.jpg bcv-kayak-river 500d7b3b09ad38d8b1f915a2d8cc12a8c8607bea4ff836b1a5739f52dc1c25d0
boofcv boofcv-data example/stitch/kayak_03.jpg bcv-kayak-river a985adc888e00545379727709e69c29883bf35d358679057fd3a42eb535a93dc
boofcv boofcv-data example/stitch/kayak_04.jpg bcv-kayak-river da9758ce4e66b512dbbb21e96476aacedc5ef2a2ef8b92acce0cc0b8b208b2a7
boofcv boofcv-data example/stitch/kayak_05.jpg bcv-kayak-river 851f8c8163e81643da943022bc4a3d3d913b4bcb9fd4d4911fbea6d3cb34fa94
boofcv boofcv-data example/stitch/kayak_06.jpg bcv-kayak-river 7e3b8c0d08d8dec162ab866ec9d157893f5a5c3849af7ce0fa0337898b48b770
boofcv boofcv-data example/stitch/kayak_07.jpg bcv-kayak-river f1975f38ca839f33355d15baba13fe7303af8585af1e363dc644f84c9c80b493
boofcv boofcv-data example/stitch/mountain_rotate_01.jpg bcv-forest-hills 91d946fc5c19dc47cb1f38d559282b0efcdb9144e11306768821ad2e76ff461e
boofcv boofcv-data example/stitch/mountain_rotate_02.jpg bcv-forest-hills c362bbd6e2f319eb5da0a3928941708c6ac903b2389f8512caab12b37ce1a72d
boofcv boofcv-data example/stitch/mountain_rotate_03.jpg bcv-forest-hills 24c9cf9eb48963c363f718ac8ec960147da2e4ed7902562b9ff36836f3aa5a66
boofcv boofcv-data example/stitch/mountain_rotate_04.jpg bcv-forest-hills 190bb81c0a3ff50607cba02c7e492236343c09a2df3c0f535940c7b836e2b0ff
boofcv boofcv-data example/stitch/trees_rotate_01.jpg bcv-woodland 789c59597df4dff67e8cb144653eae969140842fa77068fc643196d0e720d857
boofcv boofcv-data example/stitch/trees_rotate_02.jpg bcv-woodland 4f0e18710691e94106e09b37b3a414dbe7609066df4ed3e705b1e0958e84ce77
boofcv boofcv-data example/stitch/trees_rotate_03.jpg bcv-woodland da6a654e1d348c0333226d3b8e64e37ac69f5d7c5e87a700f746460d38759751
boofcv boofcv-data example/stitch/trees_rotate_04.jpg bcv-woodland 005a463b0272e8163e49c0c87216c218ddc74965f083ec2861aecd813610a193
boofcv boofcv-data example/scale/beach01.jpg bcv-beach 0b694b16f5f9e9963efd184d1ec508e231975ababb6ec68350f8846565123fe2
boofcv boofcv-data example/scale/beach02.jpg bcv-beach 402b99d821982775dda82b75d7a9c903ebdb11c3f41bc8305e9c5da35a9ae04f
boofcv boofcv-data example/scale/beach03.jpg bcv-beach ad26340577cb09ba7ae24fea6b497879971f6a18cec55c37f4473a8ccd0a6d4d
boofcv boofcv-data example/scale/mountain_4p2mm.jpg bcv-mountain-zoom 486620b2dd8037dbdcf9f9c42cf128afcbddc5a4b5331b6f0536617e93a1b2a5
boofcv boofcv-data example/scale/mountain_7p1mm.jpg bcv-mountain-zoom 4d88a4e25fe21ff4903667f90a1c686f907fd1f8a2d394b39e4eccb76cbf997e
boofcv boofcv-data example/scale/mountain_19p9mm.jpg bcv-mountain-zoom 48c47e3f2c37583d5229dabcea5b24f84e4b8dd95eecda4bd16ae22c054b35f7
boofcv boofcv-data example/scale/rainforest_01.jpg bcv-rainforest a183eb634586c29c36c94c549b333375229445ced95358b5b0f7fba84f72359e
boofcv boofcv-data example/scale/rainforest_02.jpg bcv-rainforest bd8e3ffff477bf28d7402b622a85c57ea614b8f5dfa97bd2ae0f6b94633190f8
boofcv boofcv-data example/scale/rainforest_03.jpg bcv-rainforest 265aae46bd749cee2536a5ddf9b523d6201b24ef13c05a65cdf4600c5424d82e
boofcv boofcv-data example/sfm/chair/image000.jpg bcv-armchair 1ee689fa4ad417cd97c22a2830ec168235c4324ce1a75f04e21a2ec6da2a0eb8
boofcv boofcv-data example/sfm/chair/image002.jpg bcv-armchair bed38104f694303b53679614bbb78f7673cb0005edb62847ac7e663887d41f7a
boofcv boofcv-data example/sfm/chair/image004.jpg bcv-armchair 69b6563a02078d71390b9a99275df58cd27e89c5dde01708a5c4bbdc2b3a7387
boofcv boofcv-data example/sfm/chair/image006.jpg bcv-armchair 607df0815b1a1bea67e870a8a8a4ae4b8d3c1ee26baf8d7f0afe60b4a8c9b953
boofcv boofcv-data example/sfm/chair/image009.jpg bcv-armchair f1a90df77ab58a6b1083a832e06a90b10e9c6d59d6ce367214c13335354d919c
boofcv boofcv-data example/sfm/chair/image012.jpg bcv-armchair 92f8e53894dd11f6303b485c39bcb8d669950a16ef03ceb3629314b29475b802
boofcv boofcv-data example/sfm/chair/image014.jpg bcv-armchair 5d2a1a19bb36e1878eb718a9ad23883df583902485c4556466480efce9514d52
boofcv boofcv-data example/sfm/chair/image016.jpg bcv-armchair f7b1572036e14dd790274c99134e6a77eb193b8a8cdc2b46a3923d7d748a7492
boofcv boofcv-data example/sfm/chair/image018.jpg bcv-armchair 3b00a3823e01a0e7b16d0cd982f20bd54ef5a5f51f84431760cfa2b3b0ab18c4
boofcv boofcv-data example/sfm/chair/image020.jpg bcv-armchair 5db559bf5d09c83b2cf264e1f872e9b413327203d77d7f8d621415c1e41a2f44
boofcv boofcv-data example/stereo/chair01_left.jpg bcv-stereo-chair-1 033bf84fee24d5e647e35884baf05751a6647070b3ca4a7f22200c3bae2abfa5
boofcv boofcv-data example/stereo/chair01_right.jpg bcv-stereo-chair-1 b2324d116b80e0ae79b059541cc9ba6ec18afbb802ac116201638eee128d990d
boofcv boofcv-data example/stereo/chair02_left.jpg bcv-stereo-chair-2 603b8b25201844e88080e71b4ad98053146cd02a0993c679d2f9d0d95535f53a
boofcv boofcv-data example/stereo/chair02_right.jpg bcv-stereo-chair-2 cb4f75977426bdbdb29a6f9f724e2eab58f9a1de223607d4fd98f5e3633729d2
boofcv boofcv-data example/stereo/garden01_left.jpg bcv-stereo-garden-1 43799325f856807bc15adb3e3ef7497e022040f8534e44e15405f6b536e079f2
boofcv boofcv-data example/stereo/garden01_right.jpg bcv-stereo-garden-1 2e35c9ad2ff5ce263a9a2300c2ee7a9f2195cc8d5c783c7add656a9c969a2e6a
boofcv boofcv-data example/stereo/garden02_left.jpg bcv-stereo-garden-2 e2653c1e312cde6d97a8bf8893652e87206cf56fe72e3e0c5d6d8a763097559e
boofcv boofcv-data example/stereo/garden02_right.jpg bcv-stereo-garden-2 a5c8fa41b27465e10be305677291cac888998d470959e11069f219fe660f7b59
boofcv boofcv-data example/stereo/lantern01_left.jpg bcv-stereo-lantern-1 4b0e418519dd20ac66439d8fc779e67c54ab1b5eea78ab51eb76e8796c2b0486
boofcv boofcv-data example/stereo/lantern01_right.jpg bcv-stereo-lantern-1 8f1b097890e4d6532bf30e8913d17eaed515e470623432a453f443c597160a18
boofcv boofcv-data example/stereo/stones01_left.jpg bcv-stereo-stones-1 30c12d98a651a91650054442332027608abb2ccaeb6a8f79156ee0cac68b5046
boofcv boofcv-data example/stereo/stones01_right.jpg bcv-stereo-stones-1 5855b3d1adde886360d64a628b035f3955fd44a007a1639efe170a71885aa028
boofcv boofcv-data example/stereo/sundial01_left.jpg bcv-stereo-sundial-1 46da806fa4745ed2b34c408d235fea85a973323be6a12e5d3c946a2b35b09956
boofcv boofcv-data example/stereo/sundial01_right.jpg bcv-stereo-sundial-1 73d2f98e2ea7b00e5a3e34961e75063dde61ae2feed37661afe45ba12aada978
boofcv boofcv-data example/stereo/wall01_left.jpg bcv-stereo-wall-1 c5ab65e1b7aca0c00bf90d87cc7f60fca05e9d882fa01abef67c471712b5d112
boofcv boofcv-data example/stereo/wall01_right.jpg bcv-stereo-wall-1 e797148853befd2c49dae5c5cafecb6fb1e9fc4a3d3e68affeccd04d7e2fb708
boofcv boofcv-data example/fiducial/image/examples/image00.jpg bcv-fiducial-board 69393e40255bfdca2f4eba058e08a7692ba0fc9166d9d061ef982e3ce3324bb0
boofcv boofcv-data example/fiducial/image/examples/image01.jpg bcv-fiducial-board c895bd24edf10e2a549e9728c725ffe8a82aa61dcddb845add263543e7f2c9de
boofcv boofcv-data example/fiducial/image/examples/image02.jpg bcv-fiducial-board 809c5956351bd6e1f5f6744ade87e946391229f673faf20239c0f70e8c6332a2
boofcv boofcv-data example/structure/dist_cyto_01.jpg bcv-jar a0ad034ba75c3cf09b24f6c49e9c70d0f067f4d568e30c3e558932aabd186705
boofcv boofcv-data example/structure/dist_cyto_02.jpg bcv-jar fd6f3501d583523677909601aac31a495b8e4b1ed71bef3a355738ee7f0d970a
boofcv boofcv-data example/spherical/equirectangular_half_dome_01.jpg bcv-half-dome-panorama a7d921afcd9ab78f7e1a0624eeffdb8456b467de49330203e3e95e13685479b4
boofcv boofcv-data example/spherical/equirectangular_half_dome_02.jpg bcv-half-dome-panorama feb3350fac251c77846b1a7d2fb54f73df8d4960b519efc4af226c8c3efb0f65
boofcv boofcv-data example/recognition/pixabay/airplane01.jpg - 7c6ac8f07835efc2fefa90268a9ae7ccb1d3ff5bd4603571f81d2f77a2ea1ab7
boofcv boofcv-data example/recognition/pixabay/airplane02.jpg - 01190e065c8c465ff49875f6855bdfc64bb8939c3a4ebdcef59a5be555ebf3f2
boofcv boofcv-data example/recognition/pixabay/airplane03.jpg - ba6033d2f5c1525c6f9632c3e779c89f7cd93e09a7b93c26b1fe07bc83d6e8a1
boofcv boofcv-data example/recognition/pixabay/airplane04.jpg - 63b8e6c688f8e1833fe5ff5d84ffd40cff2e66fc9afdcef5a474a324c0bed7af
boofcv boofcv-data example/recognition/pixabay/bag01.jpg - 4c5ed194a73a6ba8f4d90ba2f09167c58d6204b47f6ac31b27e70de765c14f1b
boofcv boofcv-data example/recognition/pixabay/bird01.jpg - 3e38f8ae1b3f8951ce08bef3280855873d9e93c7cc8188a838f97a3d61c98ff3
boofcv boofcv-data example/recognition/pixabay/bird02.jpg - aab2f0fbbcc9a1774b6d12054bfcea816348c827e1eb3285aac57827a0dd1982
boofcv boofcv-data example/recognition/pixabay/bird03.jpg - 6b438c110542df011b318255b54309c56aa3efbca72eae74ed19104ffb9b28e9
boofcv boofcv-data example/recognition/pixabay/bird04.jpg - 3727366b5de12a2fbc64e158079c1ea40a8c3d8909ed930e1c126247414422b0
boofcv boofcv-data example/recognition/pixabay/car01.jpg - 9d1932f27c7eb476ba2753f9012ee86595bca9327df03c60041e6cbd1caa96a9
boofcv boofcv-data example/recognition/pixabay/car02.jpg - 69ff9e6abf9d261bf7a3292432311791e6d23ab4a3079444ceaac12858643207
boofcv boofcv-data example/recognition/pixabay/car03.jpg - 7be6b2259a85e1e9ed8a275336b84a1f7387842f382dc700cbc04e35ca51928a
boofcv boofcv-data example/recognition/pixabay/cat01.jpg - 347833dd86deb11ea8d42430962894261e1081371dd4db521184c189599f86b8
boofcv boofcv-data example/recognition/pixabay/cat02.jpg - c88f6f91360244704157a119cc0e9ab9c4b7310327fdf7e74e159456d802c768
boofcv boofcv-data example/recognition/pixabay/cat03.jpg - 27e59c8153a1cb8f12227f360f3a22c5ccbcdb22463f680790490b4ad34b8d0e
boofcv boofcv-data example/recognition/pixabay/chair01.jpg - d85b46daf5ab520bdfb9ec78dde52311a0f02271dba4c4ce40eacb70c1499fc7
boofcv boofcv-data example/recognition/pixabay/corn01.jpg - 2b9039e84ba7040fb227678480578bc466a829ce0d579686d98374852394556b
boofcv boofcv-data example/recognition/pixabay/corn02.jpg - 64a219696bad8682eb1afce1a3d2b0260b7b0581d8561055e213fed321403b02
boofcv boofcv-data example/recognition/pixabay/deer01.jpg - 15923eb74dc29127a7a09b7e42fe7b6eb42c53a023659a6deac05242473b895d
boofcv boofcv-data example/recognition/pixabay/deer02.jpg - 82c199895e80b97268aa2634ae929cb5cf71712bc2a2462f1c2b047215319b6b
boofcv boofcv-data example/recognition/pixabay/deer03.jpg - 0839f6cab7187217f37c8194b836395dd8b83f511c6d9a2a9bf8941b0625a174
boofcv boofcv-data example/recognition/pixabay/deer04.jpg - 0958bb1c16a9d8b67891474e715975dafb29dd824a4a1dfa0ef9685fc537667e
boofcv boofcv-data example/recognition/pixabay/dog01.jpg - 0b9e1bf415c77a5b806dd6abd18797afc43e2d67cef4dcf7f1df8b48bef3fdc3
boofcv boofcv-data example/recognition/pixabay/dog02.jpg - ecaf6401fe9bc00e01dd6953855494d8d769df80f2b8af7a2649cffb740e76ea
boofcv boofcv-data example/recognition/pixabay/dog03.jpg - 4429fb311b4999c61509c90cc01f5e52dde16c0878e6c3c27da7285a8a79fff8
boofcv boofcv-data example/recognition/pixabay/dog04.jpg - ebd7f0b5cbfa0e76cb873ff6d3fdd8e61613d6aed48a94953424e307f1268e16
boofcv boofcv-data example/recognition/pixabay/flower01.jpg - b8d4dc4340d9db793fa99690f39d7f7066d39d4ceb2cd93796e52432ca5e5420
boofcv boofcv-data example/recognition/pixabay/flower02.jpg - d5a3a232b4782a2eee004548411f635e0941aaf3b8e5eae79b24797eec8528cc
boofcv boofcv-data example/recognition/pixabay/frog01.jpg - 7d3720228be33fe13a9f0cfa97f7d1dada03ec2b40e5d250cee3c1a627fcf94f
boofcv boofcv-data example/recognition/pixabay/frog02.jpg - 9d302cccddb35115fae2c2bb8c83bd2d92e84720fed596e156f97ccc7d64760e
boofcv boofcv-data example/recognition/pixabay/frog03.jpg - 5ea28b113278d71ec84b1da98150a6e85ea69ee672c9e961063297bcaa561512
boofcv boofcv-data example/recognition/pixabay/frog04.jpg - 2412904554f92efc486a343246db8f49dc5596b67baaeb188c9cbd1c1c8cd6ef
boofcv boofcv-data example/recognition/pixabay/grapes01.jpg - 26b6aaba649d387c683d925fda40465610d910e9e1f5108fb8ac25d6f3c0b508
boofcv boofcv-data example/recognition/pixabay/hands01.jpg - b0d2b10330d2c5d59abd0f53e04250b05be7203398f1b20da2e802fa2c835a0b
boofcv boofcv-data example/recognition/pixabay/horse01.jpg - 549866dcece107dd440139922ae7a0f6598ee747bc24e208abd9ad3d03607e8b
boofcv boofcv-data example/recognition/pixabay/horse02.jpg - 30129fd63e965b965a496a07e58f5827b9ef48dac4300701d930b6fe1cb9db8e
boofcv boofcv-data example/recognition/pixabay/horse03.jpg - b2f5cb05d2b9408dafa4979496d213e24ffb6ba31b9addb0969ae1327bbf4df2
boofcv boofcv-data example/recognition/pixabay/insect01.jpg - 5a4c79b43de092e86b85457139a01780b33590e35d18dee6765e3a44f91047b6
boofcv boofcv-data example/recognition/pixabay/insect02.jpg - 6e4da13bdc44576109eb7f90dd5cea1e0e7bb4891b00ee75ed2676858b2cffc0
boofcv boofcv-data example/recognition/pixabay/laptop01.jpg - 5ebe8437ee3a11366b669e85585077e126ebcb61a18cf5de3778c1be6cb99e70
boofcv boofcv-data example/recognition/pixabay/lizard01.jpg - c22f95a0ad1171d59020b2baa410655b57808a2c811f035a473d37f608880c0e
boofcv boofcv-data example/recognition/pixabay/lizard02.jpg - 2a58baebb23f7fcdbb47b91b845ff959c3faa2a739faceeab3f98d14dc6a12e4
boofcv boofcv-data example/recognition/pixabay/lizard03.jpg - e6153b7d7c1c2fe6c4228fe869d31d258172352814c2ba545c5ae9d81c2eb5db
boofcv boofcv-data example/recognition/pixabay/person01.jpg - 7bb3d97c9f4fab6921d9d42103bd28f6930e3a8cff5d65c3a91742936f9bbb52
boofcv boofcv-data example/recognition/pixabay/person02.jpg - ca87fe61d11c39d391af368faa5ad341a210074739e278c5e2f6b16773311b2b
boofcv boofcv-data example/recognition/pixabay/rabbit01.jpg - 0c521308536f897cead963d63a6e59a83d1bb2b73ef8c71549151124b191f621
boofcv boofcv-data example/recognition/pixabay/ship01.jpg - 067a0a8f8411e4f4828e70d54bffab439b1e5fc4615d39da28f0ad1bcf0764cf
boofcv boofcv-data example/recognition/pixabay/ship02.jpg - bb2a6517c0e9ab4173e4fae471cdd4d8cec3a3eb6671234d35333fec41b51bf9
boofcv boofcv-data example/recognition/pixabay/ship03.jpg - 59a31b48a94a96735af8271db002259d252f86555cf68ecf82533c750c910f2e
boofcv boofcv-data example/recognition/pixabay/ship04.jpg - 4d25a121943593c43ae6f1b2cde58773d691d8be87cc2b00afa816abf82d3c03
boofcv boofcv-data example/recognition/pixabay/silverwear01.jpg - 983f02378a9fc36276e3cbee3a3ffb3304eaeac11bc9f7e1effba4bb1057021c
boofcv boofcv-data example/recognition/pixabay/stairs01.jpg - ffb87f4553b48428a308135d1fb0dabd5a04994aadc783c63999c6f4d335e265
boofcv boofcv-data example/recognition/pixabay/statue01.jpg - b04427a63218d0f7b5a6efdec74060acaf8db01267d4e63c8947ee48371f1bbe
boofcv boofcv-data example/recognition/pixabay/truck01.jpg - 7514c20ee185842bcf4262984b29ccf7d883a193cf002aa5e4a38d9b5da73de3
boofcv boofcv-data example/recognition/pixabay/truck02.jpg - 9686a19d910e2b9952d5cd1af96a467a0e0b069f81d9b82bf781e191c3716962
boofcv boofcv-data example/indoors01.jpg - a6ad261f4e75525d57e3293ba1f543e5eb5da78a39afc7f448ef314af9c8d773
boofcv boofcv-data example/outdoors01.jpg - 5534eeebb9c51bd76d7c9767f9e7fe553d6607b061534bd121108b22a43f8184
boofcv boofcv-data example/goals_and_stuff.jpg - d41163a73982d9a9d4b53b9b950c97f92cb0a2037fd98222a71b57a82698ef37
boofcv boofcv-data example/lines_indoors.jpg - 854615e768ee74ced9959d0e42027d05849353872b08928e1d16ec47a6479710
boofcv boofcv-data example/simple_objects.jpg - 498fbbebab47a1bd0826c758981199c462137504c6d8d608ebcb82fe3d196c50
boofcv boofcv-data example/kinect/basket/basket_rgb.png - 7ad5e1407b550e9521890ec65eed887aea54a90a849bca298c4a25472108e6c0
opencv opencv-doc data/aero1.jpg ocv-aerial d9a69191f6e3642ea361bc3c62e677b2f40fe6534b78da540f4155e0734b59ef
opencv opencv-doc data/aero3.jpg ocv-aerial 1c407146f8762b3b14a7953ff9bc4c01ed64c467d7277122e769bf7e816017a4
opencv opencv-doc data/box.png ocv-cereal-box 1094629c1e2ebbc8a9ae2c9c63e18c1dff0f5f1481146e02f3b11a3d30feb20a
opencv opencv-doc data/box_in_scene.png ocv-cereal-box 8b0225ff76244a42bd1400c0904f8b7afea7d97b7d8115495e42e98ad347bd51
opencv opencv-doc data/graf1.png ocv-graffiti 1504b769303c7bde00fa578eeaad3c68e02aceabeb1242e556f1f8d19e4bdea5
opencv opencv-doc data/graf3.png ocv-graffiti 492e0e96f21748d093e1a29f4dbfd46528bd75966937e85ce7c8abc0f361fc15
opencv opencv-doc data/leuvenA.jpg ocv-leuven b2977cdbd9fb3f94dadd6f76cf586d145676deb8a22b5f0f42149d21c058c09f
opencv opencv-doc data/leuvenB.jpg ocv-leuven 5bb41a60038a2baa5d8ea0eaba55e6e3050d721b254cf79d8d8998d7e49d664a
opencv opencv-doc data/basketball1.png ocv-basketball ba06f6701f7260998b430c39b6557f775497e6ce7b1a74f0b7ea6af371bf54a6
opencv opencv-doc data/basketball2.png ocv-basketball b3047772e0dc6c9d83c26f64894ca1a897f799f855c5574ac24b2ef934c2978e
opencv opencv-doc data/aloeL.jpg ocv-aloe cce5736808efe80d9f04b118dbb978c344d4345672b332718c3e039a3eeb8eee
opencv opencv-doc data/aloeR.jpg ocv-aloe 9b23100df31a846bc6e6a6545563b2b4120b948c9835c7d36cde00af77f4503e
opencv opencv-doc data/rubberwhale1.png ocv-rubber-whale eb312435369dac9efcc92f7e098edbd9ed8d7e6dfede8b3b4d8e3702cd80b796
opencv opencv-doc data/rubberwhale2.png ocv-rubber-whale ee309a00d47b837b322ea5d9128775e0c46869b8014376286ba316a073d293ac
opencv opencv-doc data/left01.jpg ocv-chessboard-room 9621899098adffa1440c8264606bb7be535ccfd9ad126ae8e0bd9b0c5a5b8676
opencv opencv-doc data/left05.jpg ocv-chessboard-room 40bab8934fa76f82ec614a7fd0e6ebb4d9f74391d5e8b0c6f2f0ed6080c6c4de
opencv opencv-doc data/left09.jpg ocv-chessboard-room 753939bc62d093c001d9118e989bef2b887f1b2f9ac03603df915a8b85aa81d3
opencv opencv-doc data/left13.jpg ocv-chessboard-room 2637fb6dd5e557f4fadb06b353a453eb0b9223f4671f6f572f815302bc4a70b3
opencv opencv-contrib modules/sfm/samples/data/images/resized_IMG_2889.jpg ocv-sagrada-familia bc346310a1158fb9eab736c32f211f597ae8dea5d0847fb0482dbc369ab7762c rot270
opencv opencv-contrib modules/sfm/samples/data/images/resized_IMG_2890.jpg ocv-sagrada-familia 65d1239af91fdf51f541a5c617fb3aae8fbcd5f6cb0f64a0528153b036eec5ea rot270
opencv opencv-contrib modules/sfm/samples/data/images/resized_IMG_2891.jpg ocv-sagrada-familia 946bf1867f841ae69e7a241bb27484557a40c4648b41e779884866c752d32898 rot270
opencv opencv-contrib modules/sfm/samples/data/images/resized_IMG_2892.jpg ocv-sagrada-familia 33d56f74316e44961a2ed6c345b8c8a6ecb8ca99687ee1da21e3bc51d9e872e0 rot270
opencv opencv-doc data/apple.jpg - e86879de3d9a807dedc742a8f464f39e6b74bbb531a1fba3583155d94997d1cd
opencv opencv-doc data/building.jpg - 742a1baad62ac82e91e718e77eedf7e85c2eddc4badfb8c87c6cbc86c45a8b07
opencv opencv-doc data/butterfly.jpg - 34a99716b78ded10eae87b4880de739d3e68cc7dd1a96812bb28f469d5eeaea8
opencv opencv-doc data/fruits.jpg - 9c031d80a1c52da5eca790db896baffec6a7e52bf786cdb7bbfca5c7f880e6a1
opencv opencv-doc data/home.jpg - 23b8cf46a1965d0ec33459b875aed43187802834db49e0daa9fa2cc842e9d8d2
opencv opencv-doc data/orange.jpg - 152c20d2f380ac985de25e474e1a5f06ed34b932191342099b8272a63a15a079
opencv opencv-doc data/squirrel_cls.jpg - 20bb6e8ae96918a36c9886b6d48e54eedeb3948591e1485c206bc1dc60c8dc8b
opencv opencv-doc data/starry_night.jpg - accda7a19a90f22a4a922fdc8c230167d7abf5f80882171e2cee125c5f12481d
opencv opencv-doc data/stuff.jpg - 21cd00afbdd0727f445dd91c0a09633e6345ed5b05a3d2355453a1f3c314c6c5
opencv opencv-doc data/board.jpg - 4c9a24ba67138ad5486d550f586cc5dd1161be112f1c1bea336d6c550cdf255f
opencv opencv-doc data/pca_test1.jpg - 9aae52b2bf730216f7e46c662f612a417ebd43642e742e7f867f33aa734293cd
opencv opencv-doc data/chicky_512.png - 4d2cf040de084fd3f34d5e3f96f1251faaa4787c1ac3b548fec5809a0d01854e
opencv opencv-doc data/licenseplate_motion.jpg - ea6fa9cea75df91bec656d1d3b903111a9c0708c6a3b88f405a5156de38ff9d6
opencv opencv-doc hfs/data/000.jpg - e4fec7e2e67a8a425b512dc32452825655b11c7fa83326ae509c5c7ab138da9a
opencv opencv-doc hfs/data/001.jpg - 4bcbe0927a8b50f2487463894328da66cddf37f2daa88448258b72892d1f7a23
opencv opencv-doc hfs/data/002.jpg - 21b07a5287dec0306846191abf720c352e57b2c6b42bb30885c9deb02664ada7
opencv opencv-doc text/scenetext01.jpg - 7f3041a7019ab4d33d2452bc757d8c4f38616bfde71431e12f7ec370d7b2018e
opencv opencv-doc text/scenetext02.jpg - d4295bff9f348012f91a2cf745753124f85041fe3c3717146c6759c4cd977211
opencv opencv-doc text/scenetext03.jpg - cadf4a3d29a7ba6fe976b53fa65f490cc2868375e8feb3d93f26029f05c662ca
opencv opencv-doc text/scenetext04.jpg - 28e08d142a04f92f96d01ff2674f7804321841cba95bd968980cdc85ef0af6df
opencv opencv-doc text/scenetext05.jpg - 63985ac1a9989a8320605d5be0ec285af0c6304a78cc9cc5de6c2c7c435f7c0b
opencv opencv-doc text/scenetext06.jpg - e4d64f10bbfb27b2c5980cb048fd0abe20dd74868ba5460298de473ced53b518
opencv opencv-doc alphamat/input_images/plant.jpg - 9928b44eee0d1d7ab2ffd9d6d80bbbff962d6e85c7786de2cd3c97fe72229186
matcher-demos aliked assets/piazza_san_marco/1.jpg md-piazza-san-marco ffa3e149e4c456dc4bc205fef5e025b215a129be0125a8852336ddc9017d4c1d
matcher-demos aliked assets/piazza_san_marco/2.jpg md-piazza-san-marco 421ea0ef24a6f6480afdf13e1d5483c6f40d4dc6928fd59af6943d26bafad790
matcher-demos aliked assets/piazza_san_marco/3.jpg md-piazza-san-marco 7728c941537aff4b4aee2a185217b1271b0c4775462184ae7987f68814e91c3e
matcher-demos aliked assets/piazza_san_marco/4.jpg md-piazza-san-marco 6f928dc49f499826b9141eb5b9aaff1b5e7550566cb5456d9bcdd9271483f7c0
matcher-demos aliked assets/piazza_san_marco/5.jpg md-piazza-san-marco 44c7e3d007d1b947f95ff4b40d25c0e542f55d46d257dec3d583355d75a65cdf
matcher-demos aliked assets/st_pauls_cathedral/1.jpg md-st-pauls f172e68bef3a45e0076b81b443e04614dac21433b2e1534058b314c1285372f5
matcher-demos aliked assets/st_pauls_cathedral/2.jpg md-st-pauls 36695d4861b839c58d699f6127c09e120f030afeb4941563b2d3a102c63ce451
matcher-demos aliked assets/st_pauls_cathedral/3.jpg md-st-pauls 191a4a1a32d69500a147579c60607b58b155c15cdc3f20c30faa970e7f487640
matcher-demos aliked assets/st_pauls_cathedral/4.jpg md-st-pauls dde8877c637d97b590f1581268e7faf0a2ebc98c41ef0e43c9055afd3ebd4529
matcher-demos aliked assets/st_pauls_cathedral/5.jpg md-st-pauls cf7c95ac75527f0d890b7c15f11d347086ef6435484fb82b6051d428394c5253
matcher-demos cotr sample_data/imgs/cathedral_1.jpg md-st-pauls 5e4d1edd9b775679b4bfe146b755b32eae58ff5a74cd61b04ba4eb123fe0df0c
matcher-demos cotr sample_data/imgs/cathedral_2.jpg md-st-pauls 732dc05e4590c7f012cc341548a6f9373e824ff5f07c93880574b4345ea793c6
matcher-demos aliked assets/tum/1311868169.163498.png md-tum-desk 20bc06c1249727c16efc812082454bc8305438f756bcc95f913b9f79819f08e3
matcher-demos aliked assets/tum/1311868169.563501.png md-tum-desk 0a0239c7cb08fefbe4f5ec87f1c5e5fd5a32be11349744dc45158caa7d403744
matcher-demos aliked assets/tum/1311868169.963415.png md-tum-desk a590b6fdb98c4a4ee8e13aafcd9d2392c78a7881b4cc7fd1109231adc3cc8b91
matcher-demos aliked assets/tum/1311868170.363400.png md-tum-desk fb6be184df6fd2ca2e287bc64ada937ce2cec3f5d90e15c244fffa8aa44b11b1
matcher-demos aliked assets/tum/1311868170.763453.png md-tum-desk 8073cc59711d6bea5038b698fb74eaa72eeca663dcc35850e0b334e234605385
matcher-demos aliked assets/tum/1311868171.063438.png md-tum-desk f54d76a6b4bb8d3fb81c257920ddffdf75480bba34d506b481ee6dfaff894ecf
matcher-demos cotr sample_data/imgs/21126421_4537535153.jpg md-sagrada-familia 34877753f9eb38b1972021e469e39c672ba7a2617447ba8a518375fa2562158e
matcher-demos cotr sample_data/imgs/21526113_4379776807.jpg md-sagrada-familia 6ba1ded83009e8d3d6c39f2468334aae1ad62cec45df234cf187da3e9e9caf2e
matcher-demos cotr sample_data/imgs/img_0.jpg md-admiralty-arch ab00127928ce9f81083e0462a6560f07daad9b06274c5960d9a51ab72ce4df8f
matcher-demos cotr sample_data/imgs/img_1.jpg md-admiralty-arch 3b7a2e854bf212f5eb616948944a1b08d266edd31053e2bed5ea0fc90af3e02d
matcher-demos cotr sample_data/imgs/paint_1.JPG md-framed-painting 1a73c59bfda33a64c7da6743044e102e92022c253d8e293dec1572e16ac1bd46
matcher-demos cotr sample_data/imgs/paint_2.jpg md-framed-painting 70a1fbad1908869a3e5e2994b8333eca821cadc298f0dab0a78aede0abdb5972
matcher-demos gim assets/demo/a1.png md-brass-ox 8567fa26324c28470898e0c0518734b3c54fcfd63464e9110b6b3ba4eb876a39
matcher-demos gim assets/demo/a2.png md-brass-ox 8b09ab4614002084b5687d4b8974752ab1f882a46e3187f3dfd68e6e1ebb35b8
matcher-demos gim assets/demo/b1.png md-stadium 8e8c8b89a84d8b8e54d987880b7faa321515fc4ba30a86a6bd5a801c43bae60e
matcher-demos gim assets/demo/b2.png md-stadium ab7cbb268d529a9e70d5bd6448ec32c6cd7d822acfe35c449aed9af65e65d666
matcher-demos gim assets/demo/c1.png md-stadium 86a7dd9449ff56db9a06a39eb57c44875ca98aad9a1e216a2cebd812193b99c3
matcher-demos gim assets/demo/c2.png md-stadium 3e8f97520b00f72caf10de811f028e987249cb0a7a8696491a219c1a1d2199c4
matcher-demos gim assets/demo/d1.png md-ceiling-fresco b2bcbb965c5328394c12a5c4ed55bc161a251a0be1f84579dadb51a11afc1b36
matcher-demos gim assets/demo/d2.png md-ceiling-fresco cd520fba1bdcfdf0cd6e2b662963395592c0fb06f092ecb87412d32af32dc039
matcher-demos roma assets/toronto_A.jpg md-toronto 40270c227df93f0f31b55e0f2ff38eb24f47940c4800c83758a74a5dfd7346ec
matcher-demos roma assets/toronto_B.jpg md-toronto a2c07550ed87e40fca8c38076eb3a81395d760a88bf0b8615167704107deff2f
matcher-demos glue-factory assets/boat1.png md-boat 67919a93de8a74ae4f0a3074571fd2478e7e0e03d4c43b8c8763271ab2d23adb
matcher-demos glue-factory assets/boat2.png md-boat ff83fe5ee1add22e6fa8cc026959ab28e5f0b1cba085076f84a274a9ae241010
matcher-demos xfeat assets/ref.png md-church-drawing 1292e2ba509b338a05820e7bf62dcda0b26688a4a4307996ee7c295e6627bee2
matcher-demos xfeat assets/tgt.png md-church-drawing ffd0fe993cd7967f2e0e44495c9f60828f8e2d6a61440ede4a951ee67b865613
matcher-demos vismatch vismatch/assets/example_pairs/indoor/gcs_close.jpg md-grand-central 1004752030f7dc1466def5eaaa20ec1b17a7dbc645aff79afdc0eba2d0963317
matcher-demos vismatch vismatch/assets/example_pairs/indoor/gcs_far.jpg md-grand-central 8d0f081ca3ef81e6bf75f173ada96ea0858c2de3df2edbea3bd78f217a2f2346
matcher-demos vismatch vismatch/assets/example_pairs/thermal/thermal.jpg md-thermal-pavilion fc321d55a2b6892cfbbc558e3d172ca62b7f1be3a5ec6b84a42762faa100f57a
matcher-demos vismatch vismatch/assets/example_pairs/thermal/visible.jpg md-thermal-pavilion b020d5de0dde6434f116c03b5903a9e04d5612ed6a98fb935f45288ab7f0edd0
matcher-demos dedode assets/im_A.jpg md-st-peters d98d1767dfcf55774bf63de5c2a16b04e2027314196f3f27eee93e94d0be3842
matcher-demos dedode assets/im_B.jpg md-st-peters 31862353454661b73afea6d2a49d5e4f15fa6d504b2bb6b2fbf2a9a24d96c4c7
matcher-demos gluestick resources/img1.jpg md-madrid-palace c8f829bcdb249e851488be4b3e9cd87c58713c5dc54a2d1333c82ad4f17b7048
matcher-demos gluestick resources/img2.jpg md-madrid-palace 6b91f870167f67ad8e3a0e57bdcd9a9062d8cea41e9c60685e6135941823d327
matcher-demos cotr sample_data/imgs/Meisje_met_de_parel.jpg - 1967233e219765a3088f8fb189cdcbea3109ca4e1a777e2bd14ab9536f11012f
matcher-demos vismatch vismatch/assets/example_pairs/false_positive/chartres.jpg - 847d3519dc3621a895ec931fabb6db7db651bddfc8b2013285d4cfbc7484a694
matcher-demos vismatch vismatch/assets/example_pairs/false_positive/notre_dame.jpg - 52d0f2395153da6b39a534bea0d02e86642198624c0d5df941adc1c4928c9b49
matcher-demos vismatch vismatch/assets/example_pairs/fresco/sist_chapel.jpg - eb5d24bb7743da2b2631ac788d264ef46365eaf108cee359621011ce76153b10
matcher-demos vismatch vismatch/assets/example_pairs/sat2iss/photo_from_iss.jpg - 1dc4caacb0b2972a7a988d723abd83eb81243f121b51204380e773d3d93fbe97
matcher-demos vismatch vismatch/assets/example_pairs/sat2iss/satellite_img.jpg - d5549dbd2b5f6d6b94f0bfe2d89046f99bb3e119c2d64d9b05bd2093528df46e
sfm-samples dim assets/example_cyprus/images/DSC_6466.JPG sfm-cyprus-arch f37944367d5d8e38858da37bd286e37f7bf7404521da718e3db1cd2ea5f5dba8
sfm-samples dim assets/example_cyprus/images/DSC_6467.JPG sfm-cyprus-arch 63ecbd5fddb4c4134dc14254dde9983d86ea04508d779d9429502cbeca9245cf
sfm-samples dim assets/example_cyprus/images/DSC_6469.JPG sfm-cyprus-arch 2220a50293db12f9280558b98494f0bda7017fc1f6e04907d9255d0cd99b4216
sfm-samples dim assets/example_cyprus/images/DSC_6470.JPG sfm-cyprus-arch a11f553d4ded49ad9afc1b174338e187e732e33be5fc004520c8f79fe08aabed
sfm-samples dim assets/example_cyprus/images/DSC_6472.JPG sfm-cyprus-arch 2ff50ba95db2860f45801e0dd5714dbaeae2286792b501b073472111ae45d51a
sfm-samples dim assets/example_cyprus/images/DSC_6473.JPG sfm-cyprus-arch 7f40b5817b716f99d714898697f8213b64bab22ecaa203f241c5bfbf5c8419c9
sfm-samples dim assets/example_cyprus/images/DSC_6474.JPG sfm-cyprus-arch 981828fb81f70f533e9c4d645064701c78c0b2b549fc04fb456abedc5d4835d9
sfm-samples dim assets/example_cyprus/images/DSC_6475.JPG sfm-cyprus-arch 0765747eab0f47f2502b1614383ad9d16b111d511dcd78f9665963faab922218
sfm-samples dim assets/example_nadar/images/frame_00.jpg sfm-nadar-portrait bdc62a76dc1aeac0e5e58be0f39b5883f8349fcb49b2874b5bc86567440d560d
sfm-samples dim assets/example_nadar/images/frame_01.jpg sfm-nadar-portrait c60f6d1e2c5c8e9d8a5428fb38dfa7f2f02c5cfae755d13fb8c109443edbc917
sfm-samples dim assets/example_nadar/images/frame_02.jpg sfm-nadar-portrait c9ca9b40ea11deab6cf9ecb27b84617e7d484330f73397c478c0fae038c52225
sfm-samples dim assets/example_nadar/images/frame_03.jpg sfm-nadar-portrait 1ed63198a2cce3fb834a90ab8455e0501f9898cec36b8d452ff9f47821142441
sfm-samples dim assets/example_nadar/images/frame_05.jpg sfm-nadar-portrait 7dd45a62b9f0622f0a46eebfeb2794d0461a66c37734a14aa25eb9c46d7355f2
sfm-samples dim assets/example_nadar/images/frame_06.jpg sfm-nadar-portrait e1f512e5930f3a0f52158f1d8e456e1570cc4a39ae40821abd26390495cc5329
sfm-samples dim assets/example_nadar/images/frame_08.jpg sfm-nadar-portrait 24f984b80f190fa7d2e6dd006bf964b20ffdfce51e46e8ce23e042b4ba40898b
sfm-samples dim assets/example_nadar/images/frame_09.jpg sfm-nadar-portrait 995b10ff039ad2286f9e7854a0583b2b00daefaee92583b29ee0642359c800b8
sfm-samples dim assets/example_nadar/images/frame_10.jpg sfm-nadar-portrait 8649591a30023a6aee9bed34e988949a3a3e47c649605cf14ee60ee5651568bd
sfm-samples dim assets/example_nadar/images/frame_11.jpg sfm-nadar-portrait 5fba093a82041cc34163658e1b2272cb08b4819228eec1b7d1826630cbf4c05c
sfm-samples dim assets/example_temple_baal/images/19144401003_5d0dee05f5_o.jpg sfm-temple-of-baal 6c421bbdd7d6bfba9dcc64b86f4f1bcbe0a00b998fed5350a93df2e9a59f9668
sfm-samples dim assets/example_temple_baal/images/2015-10-15_19.12.50.png sfm-temple-of-baal ad628f4db975f64ebdc32ffd56da262d9a49e814b728a2957ecada7db3d26b9d
sfm-samples dim assets/example_temple_baal/images/25.jpg sfm-temple-of-baal b6ff28f96646fa1102ee133f6f70450184f03e52f31aee1fcfa8c88f84b17246
sfm-samples dim assets/example_temple_baal/images/5741.jpg sfm-temple-of-baal 6334dae92ccd39b1327c39b4a637b07833c8d2fd6066cd189d71746d37df707d
sfm-samples dim assets/example_thermal/images/22-18-41-880-radiometric.jpg sfm-thermal-house c9e88a4591fbe678704ab749707910924feaac342463322166c391ab9922fb2e
sfm-samples dim assets/example_thermal/images/22-18-49-049-radiometric.jpg sfm-thermal-house b4c2c1395eaf47ea2e009b49b14b48e27e862cb3836ea25959e831011b79dc50
sfm-samples dim assets/example_thermal/images/22-18-55-169-radiometric.jpg sfm-thermal-house 973b8582c4aa7b54b5cdffb5d6166c8df975c34053e166e7119aed91bffeedbb
sfm-samples dim assets/example_thermal/images/_A726144_1.jpg sfm-thermal-house de8b960cf5fa01fa7fcea1fddd9ce42e582e0c62c09808b3df76922c44d9d344
sfm-samples dim assets/example_thermal/images/_A726145_1.jpg sfm-thermal-house 0b179d73b57408766b4f3f82aaea2069204608be22691697d80cacdd998c1c21
sfm-samples dim assets/example_thermal/images/_A726146_1.jpg sfm-thermal-house 7714f82f5f4305ac04a0c5922a18188c28e9e6bcd54fb9f3a0084425de4a163c
sfm-samples opensfm data/berlin/images/01.jpg sfm-berlin-cathedral 4b3fbfb5d2bda883f7e971535fb71ecb7b45c8fcda35606c6d856e1fb923ffce
sfm-samples opensfm data/berlin/images/02.jpg sfm-berlin-cathedral d21b2fd5a3b41b9f244a6317400a8e4a44609dd318213598c2e894f9ead9141a
sfm-samples opensfm data/berlin/images/03.jpg sfm-berlin-cathedral afec918e18fcf5ec6a66c5e3b2185117d3a04b583c31e8a1371f195a38b45501
sfm-samples opensfm data/lund/images/01.jpg sfm-lund-street-a aa9431fde8e3ebeaa7467759752bb07354c180f7a790245374e621040367ec80
sfm-samples opensfm data/lund/images/02.jpg sfm-lund-street-a 8c71ad54a09cab1a3e82a600e1288494220e76f7f91034832e06eeef0ba694a8
sfm-samples opensfm data/lund/images/03.jpg sfm-lund-street-a 7fc0535a10e192030ee862512d86e88c62e57b28d176207a288c5015b3d59457
sfm-samples opensfm data/lund/images/05.jpg sfm-lund-street-a 8b1eb02d9e1b2cdafb9fcf652c608c5ab871d107237643253063bad9a7950516
sfm-samples opensfm data/lund/images/07.jpg sfm-lund-street-a f7171b8f82c9eed62fcd52dcc8a6b327f1224a6e7ab8a4ec08e39b2079b11054
sfm-samples opensfm data/lund/images/09.jpg sfm-lund-street-b cc55812b5078f504783871b30c891fa0a459a45de7b9de00f6562f7af60314d4
sfm-samples opensfm data/lund/images/12.jpg sfm-lund-street-b bf250b3ca3fbd48768620930e41be3445dec95ca99a6687c9e6e40615d6dca87
sfm-samples opensfm data/lund/images/15.jpg sfm-lund-street-b cb5cebca5849e364ca80fc4fbbde61afcbd554d9d1a4dde0ebe7701327c36b4f
sfm-samples opensfm data/lund/images/18.jpg sfm-lund-street-b e1250c26d6fc5cc556a047f18d74c6a439b8d3eaabcbec97d7cb788b3b8da180
sfm-samples opensfm data/lund/images/21.jpg sfm-lund-street-b 811cc9464cbbbf2ff4225cf063a716d0451066b78e30297efb818e741fbf4504
sfm-samples opensfm data/lund/images/25.jpg sfm-lund-street-c df34354e9090906187bdbaab90a0e7e924bd9671b7561e086f0cf4eee6ae04cf
sfm-samples opensfm data/lund/images/26.jpg sfm-lund-street-c d8b7b2855a822a8f2beaaa8df90163a3a16d14949a9ddfdce4d218cb13034d0f
sfm-samples opensfm data/lund/images/27.jpg sfm-lund-street-c bc0a6b68e350e1f35dfe107bf1b40e1c750fd7e60083db69525a77d8fcb9e3e5
sfm-samples opensfm data/lund/images/28.jpg sfm-lund-street-c 9a3017afa5867e40c643f505e8d59d3a14fe5b999c0ba39a6db6314707cd7402
sfm-samples opensfm data/lund/images/29.jpg sfm-lund-street-c e7d597bb1abdba7eb03d0228f5c5c5037c46e612559278f314270058e9bd543d
sfm-samples kapture samples/maupertuis_openMVG/images/MaupertuisTest_01.jpg sfm-maupertuis 074f2712717d2d31a294f280be36452329cb27f4b50bd4ff7dfed4241c1a8452
sfm-samples kapture samples/maupertuis_openMVG/images/MaupertuisTest_02.jpg sfm-maupertuis 5720cfd75767f35274db6ea5d527d8e0ebcf310e94d342b871ff76242f575827
sfm-samples kapture samples/maupertuis_openMVG/images/MaupertuisTest_03.jpg sfm-maupertuis a44ec914086ce7e09f43a519dfc65b8d829b01a1b9c698d3009602044008fb97
sfm-samples kapture samples/maupertuis_openMVG/images/MaupertuisTest_04.jpg sfm-maupertuis ff5cadb54fb70a3e8abbc110ab23bc6c2e796be6d73473a052b9694cf3774ff7
sfm-samples kapture samples/cour_carree_markers/map/images/floor2_01.jpg sfm-marker-door 3b6d184b1ddd2c88c8a2f2a3bf449925d174f4dcbd3ceee8462522e5b39a55b9
sfm-samples kapture samples/cour_carree_markers/map/images/floor2_02.jpg sfm-marker-door fcc781215efd55fcf543b8f8af4b0ae7b77be1cc3530175f9aefbbdd62efba37
sfm-samples kapture samples/cour_carree_markers/map/images/floor2_03.jpg sfm-marker-door 61e8ee516f8fdf587f23cb537b12c878c5664b7848329c98d3386ba630a368ab
sfm-samples kapture samples/cour_carree_markers/map/images/floor2_04.jpg sfm-marker-door 1191da550cc67cb8627904ef83e319ad88149e1befb009af8b73c2f91f5e7753
sfm-samples kapture samples/cour_carree_markers/map/images/floor2_05.jpg sfm-marker-door da7772113ba7381a17834acafa41e918cede373f9c7d274af29e52b9523bf30e
sfm-samples vlfeat data/roofs1.jpg sfm-roofs 8cf09f51e3c5d13828b2920db5eb1a25f85caef2834892e671f713420d42c205
sfm-samples vlfeat data/roofs2.jpg sfm-roofs 38c5ba31ffd3abfe8a28d3925677e8ba08b6ea1f4c4aab536dc5d310bb739da8
sfm-samples vlfeat data/river1.jpg sfm-river 723987087bf03b935a7e92df52d2c818b950db3c5884195d2d5c1b0bb79d24be
sfm-samples vlfeat data/river2.jpg sfm-river 20f7eee7e64269e8f20394ba1611d4349135e4179421a2222dc8ec5dfbe47d61
sfm-samples buddha buddha/00006._c.png sfm-buddha-head 905d8132f5877d3e0d9f8b764633a1971ee89dc61f0de81a2c6ba7ef369c3798
sfm-samples buddha buddha/00010._c.png sfm-buddha-head 2affef598f9965e4cfcb17e531d7bd29bb344566518920aad23d38275c247d33
sfm-samples buddha buddha/00018._c.png sfm-buddha-head c85ab8f07d65d6f91fd53eef05de196ac056529ce5f3ce448e725c96dde64ad0
sfm-samples buddha buddha/00028._c.png sfm-buddha-head 1e17ed1d931b3fa3e29e05315a9de9beff071048d4413caf7e25bbe98e071215
sfm-samples buddha buddha/00042._c.png sfm-buddha-head 3c24c7333bfbd9fb7667dee97bab4b0caf55df0c718338b72564fc682d52a360
sfm-samples buddha buddha/00047._c.png sfm-buddha-head 7e57f92760c0dfc83f2b3f8953c412ce5df8fc551d55a90cb9c8442095891693
sfm-samples buddha buddha/00052._c.png sfm-buddha-head 1d8b68b9f3b1a17ac6736d239ee5e369e745cc7543940a8b364e5fd046433c37
sfm-samples buddha buddha/00055._c.png sfm-buddha-head d5266845dbbe58326bfcd161efa343fd7675b7bd828a0cae37fd4545c1ded24e
sfm-samples buddha buddha/00060._c.png sfm-buddha-head d48fbc95c3ee9647ee848a2a0c1d88d69b4cb059b1e3eec5e22fc691413c8792
sfm-samples buddha buddha/00065._c.png sfm-buddha-head 193b8c5074ea1320b634bbb50aa9b1cdb12763967b76f16d9e0233456e9ddb66
sfm-samples kapture samples/t265/Everest_undistorted/images/frame_000000001.jpg sfm-ornate-door-fisheye 534f6b2e7b4265007a6e38b3458f46e65865924d15df0f5d067961ec8fa8ab43
sfm-samples kapture samples/t265/Everest_undistorted/images/frame_000000005.jpg sfm-ornate-door-fisheye cbcac00e45aeadbb0401f166f8164808efb01682a1b836422c58609b90e4e51f
sfm-samples kapture samples/t265/Everest_undistorted/images/frame_000000009.jpg sfm-ornate-door-fisheye 7bab9332017828987ae73177b765d4d61caa02462ac316c6fded7e16fb9e38eb
sfm-samples dim assets/example_mascotte/images/mascotte.jpg - 7e2798d3ae18cbe464b3bdf19d8466d096d3f48b3f484408779c49d173aeeaba
sfm-samples vlfeat data/box.pgm - 4b52ff70880872c880d4354867170a699af1606db5f0393c1c0f4217a5270b90
"""


def parse_manifest():
    rows = []
    for line in MANIFEST.strip().splitlines():
        fields = line.split()
        source, origin, path, group, sha = fields[:5]
        rot = fields[5] if len(fields) > 5 else ""
        if origin not in ORIGINS or rot not in ("", "rot90", "rot180", "rot270"):
            sys.exit(f"manifest: bad line {line!r}")
        rows.append(dict(source=source, origin=origin, path=path, group="" if group == "-" else group, sha256=sha, rot=rot))
    return rows


def assign_names(rows):
    """Output file name of every row: <group>_<n>.jpg (n from 1, manifest order) or distractor_<nn>.jpg."""
    per_source = OrderedDict()
    for r in rows:
        per_source.setdefault(r["source"], []).append(r)
    for source, items in per_source.items():
        counts = {}
        n_distr = sum(1 for r in items if not r["group"])
        width = max(2, len(str(n_distr)))
        d = 0
        for r in items:
            if r["group"]:
                counts[r["group"]] = counts.get(r["group"], 0) + 1
                r["image"] = f"{r['group']}_{counts[r['group']]}.jpg"
            else:
                d += 1
                r["image"] = f"distractor_{d:0{width}d}.jpg"
        singletons = [g for g, c in counts.items() if c < 2]
        if singletons:
            sys.exit(f"{source}: groups with a single image: {singletons}")
    return per_source


class GitReader:
    def __init__(self, mirrors, key, spec):
        owner_name = spec["repo"].replace("/", "+")
        base = os.path.join(mirrors, owner_name)
        self.commit = spec["commit"]
        self.worktree = None
        self.gitdir = None
        for cand in (os.path.join(base, "repo"), base):
            if os.path.isfile(os.path.join(cand, "HEAD")) and os.path.isdir(os.path.join(cand, "objects")):
                self.gitdir = cand
                break
        if self.gitdir is None and os.path.isdir(base):
            self.worktree = base
        if self.gitdir is None and self.worktree is None:
            raise FileNotFoundError(f"{key}: no snapshot of {spec['repo']} under {base}")
        self.rev = None
        if self.gitdir:
            ok = subprocess.run(["git", "--git-dir", self.gitdir, "cat-file", "-e", self.commit + "^{commit}"],
                                capture_output=True).returncode == 0
            self.rev = self.commit if ok else "HEAD"

    def read(self, path):
        if self.worktree:
            with open(os.path.join(self.worktree, path), "rb") as f:
                return f.read()
        p = subprocess.run(["git", "--git-dir", self.gitdir, "show", f"{self.rev}:{path}"], capture_output=True)
        if p.returncode != 0:
            raise FileNotFoundError(f"{path} not in {self.gitdir} at {self.rev}: {p.stderr.decode().strip()}")
        return p.stdout


class DebReader:
    """Reads members of data.tar.* inside a .deb (ar archive) without dpkg."""

    def __init__(self, debs, key, spec):
        path = os.path.join(debs, spec["file"])
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{key}: {path} missing (apt-get download {spec['package']}={spec['version']})")
        self.prefix = spec["prefix"]
        with open(path, "rb") as f:
            data = f.read()
        if data[:8] != b"!<arch>\n":
            raise ValueError(f"{path}: not an ar archive")
        pos, payload = 8, None
        while pos + 60 <= len(data):
            hdr = data[pos:pos + 60]
            name = hdr[:16].decode().strip().rstrip("/")
            size = int(hdr[48:58].decode().strip())
            body = data[pos + 60:pos + 60 + size]
            if name.startswith("data.tar"):
                payload = (name, body)
            pos += 60 + size + (size & 1)
        if payload is None:
            raise ValueError(f"{path}: no data.tar member")
        name, body = payload
        if name.endswith(".xz"):
            body = lzma.decompress(body)
        elif name != "data.tar":
            raise ValueError(f"{path}: unsupported {name}")
        self.tar = tarfile.open(fileobj=io.BytesIO(body))

    def read(self, path):
        f = self.tar.extractfile(self.prefix + path)
        if f is None:
            raise FileNotFoundError(self.prefix + path)
        return f.read()


def convert(data, rot=""):
    from PIL import Image, ImageOps
    im = Image.open(io.BytesIO(data))
    im.load()
    im = ImageOps.exif_transpose(im)
    if rot:
        im = im.transpose({"rot90": Image.Transpose.ROTATE_90, "rot180": Image.Transpose.ROTATE_180,
                           "rot270": Image.Transpose.ROTATE_270}[rot])
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        lo, hi = im.getextrema()
        scale = 255.0 / max(1, hi - lo)
        im = im.point(lambda v: (v - lo) * scale).convert("L")
    if im.mode == "P":
        im = im.convert("RGBA")
    im = im.convert("RGB")
    w, h = im.size
    s = MAX_SIDE / max(w, h)
    if s < 1:
        im = im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    im.save(out, "JPEG", quality=JPEG_QUALITY)
    return out.getvalue(), im.size


def main():
    repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mirrors", help="directory holding <owner>+<name> repository snapshots")
    ap.add_argument("--debs", help="directory holding the .deb files named in ORIGINS")
    ap.add_argument("--out", default=os.path.join(repo_root, "data", "validation"))
    ap.add_argument("--verify", action="store_true", help="compare a rebuild with the files under --out, write nothing")
    ap.add_argument("--summary", action="store_true", help="print counts from the manifest and exit")
    args = ap.parse_args()

    rows = parse_manifest()
    per_source = assign_names(rows)
    if args.summary:
        tot = [0, 0, 0]
        for source, items in per_source.items():
            groups = {r["group"] for r in items if r["group"]}
            n_d = sum(1 for r in items if not r["group"])
            print(f"{source}: {len(items)} photos, {len(groups)} groups, {len(items) - n_d} grouped, {n_d} distractors")
            tot = [tot[0] + len(items), tot[1] + len(groups), tot[2] + n_d]
        print(f"total: {tot[0]} photos, {tot[1]} groups, {tot[2]} distractors")
        return
    if not args.mirrors or not args.debs:
        ap.error("--mirrors and --debs are required")

    seen = {}
    for r in rows:
        if r["sha256"] in seen:
            sys.exit(f"the same original twice: {r['path']} and {seen[r['sha256']]}")
        seen[r["sha256"]] = r["path"]

    readers = {}
    for key, spec in ORIGINS.items():
        if not any(r["origin"] == key for r in rows):
            continue
        readers[key] = GitReader(args.mirrors, key, spec) if spec["kind"] == "git" else DebReader(args.debs, key, spec)

    results = {}
    bad = []
    for r in rows:
        data = readers[r["origin"]].read(r["path"])
        got = hashlib.sha256(data).hexdigest()
        if got != r["sha256"]:
            bad.append(f"{r['origin']}:{r['path']}: sha256 {got}, expected {r['sha256']}")
            continue
        results[(r["source"], r["image"])] = convert(data, r["rot"])
    if bad:
        sys.exit("checksum mismatch:\n  " + "\n  ".join(bad))

    prov_header = ["source", "image", "group", "origin_repository", "origin_commit_or_version", "path_in_origin",
                   "sha256_original", "licence", "width", "height"]
    prov_rows = []
    for r in rows:
        spec = ORIGINS[r["origin"]]
        repo = spec["repo"] if spec["kind"] == "git" else f"Debian package {spec['package']}"
        ver = spec["commit"] if spec["kind"] == "git" else spec["version"]
        path = r["path"] if spec["kind"] == "git" else spec["prefix"].lstrip("./") + r["path"]
        lic = spec["licence"]
        if r["origin"] == "boofcv-data":
            lic = ("CC-BY-SA-4.0" if "/triple/" in r["path"] else "CC0-1.0 (Pixabay)" if "/pixabay/" in r["path"] else "CC-BY-4.0")
        elif r["origin"] == "opencv-doc":
            lic = "Apache-2.0 AND BSD-3-Clause"
        w, h = results[(r["source"], r["image"])][1]
        prov_rows.append([r["source"], r["image"], r["group"], repo, ver, path, r["sha256"], lic, w, h])

    files = {}
    for source, items in per_source.items():
        grouped = sorted((r for r in items if r["group"]), key=lambda r: (r["group"], int(r["image"].rsplit("_", 1)[1][:-4])))
        distr = sorted((r for r in items if not r["group"]), key=lambda r: r["image"])
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["image", "group"])
        for r in grouped + distr:
            w.writerow([r["image"], r["group"]])
        files[os.path.join(source, "groups.csv")] = buf.getvalue().encode()
        for r in items:
            files[os.path.join(source, "images", r["image"])] = results[(source, r["image"])][0]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(prov_header)
    order = {s: i for i, s in enumerate(per_source)}
    for p in sorted(prov_rows, key=lambda p: (order[p[0]], p[2] == "", p[1])):
        w.writerow(p)
    files["provenance.csv"] = buf.getvalue().encode()

    if args.verify:
        diff = []
        for rel, data in sorted(files.items()):
            path = os.path.join(args.out, rel)
            if not os.path.isfile(path):
                diff.append(f"missing {rel}")
                continue
            with open(path, "rb") as f:
                if f.read() != data:
                    diff.append(f"differs {rel}")
        for source in per_source:
            d = os.path.join(args.out, source, "images")
            if os.path.isdir(d):
                for name in sorted(os.listdir(d)):
                    if os.path.join(source, "images", name) not in files:
                        diff.append(f"extra {source}/images/{name}")
        if diff:
            print("\n".join(diff))
            sys.exit(f"{len(diff)} difference(s)")
        print(f"verified: {len(files)} files identical")
        return

    for source in per_source:
        d = os.path.join(args.out, source, "images")
        if os.path.isdir(d):
            for name in os.listdir(d):
                if name.endswith(".jpg"):
                    os.remove(os.path.join(d, name))
    for rel, data in files.items():
        path = os.path.join(args.out, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    print(f"wrote {len(files)} files under {args.out}")


if __name__ == "__main__":
    main()
