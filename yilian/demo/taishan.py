"""The demo county as data: 台山市 (Taishan, Jiangmen, Guangdong; GB/T 2260 code 440781).

The two 医共体 and their members follow Taishan's public 2020 plan (docs: /work/shared/domain/taishan.md).
The towns are Taishan's real 街道 and 镇. Village and community names are written in the style of the
area for the demo; they are not an official roster, and every figure (beds, population) is invented.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from yilian.accounts.models import PractitionerTitle
from yilian.accounts.roles import Role
from yilian.organizations.models import Capability, InstitutionKind, InstitutionLevel, MemberRole

DIVISION_CODE = "440781"
AUTHORITY_NAME = "台山市卫生健康局"
COUNTY = "台山市"
# Consortia were set up under the 2020 plan; staff memberships start the same day.
ESTABLISHED_ON = dt.date(2020, 1, 1)
# Ages are counted from this fixed day so that a seed gives the same birth dates in any year.
REFERENCE_DATE = dt.date(2026, 1, 1)
DEMO_PASSWORD = "Yilian@2026"
DEFAULT_SEED = 2026
DEFAULT_RESIDENTS = 5000

K1 = "K1"  # 台山市人民医院医疗卫生共同体
K2 = "K2"  # 台山市中医院医疗卫生共同体


@dataclass(frozen=True)
class ConsortiumSpec:
    key: str
    name: str
    short_name: str
    lead: str


CONSORTIA = (
    ConsortiumSpec(K1, "台山市人民医院医疗卫生共同体", "人民医院医共体", "台山市人民医院"),
    ConsortiumSpec(K2, "台山市中医院医疗卫生共同体", "中医院医共体", "台山市中医院"),
)


@dataclass(frozen=True)
class HospitalSpec:
    """A city-level hospital: a consortium lead or backbone member."""

    name: str
    short_name: str
    slug: str  # for usernames of its staff
    kind: str
    level: str
    consortium: str
    role: str
    town: str
    address: str
    beds: int
    capabilities: tuple[str, ...]
    departments: tuple[tuple[str, str, bool, int], ...]  # (code, name, clinical, beds)
    doctors_per_department: int
    nurses: int


_C = Capability

# 诊疗科目 codes (卫医发〔1994〕27号) written without the dot; administrative offices use A-codes.
_LEAD_GENERAL_DEPARTMENTS = (
    ("0301", "呼吸内科", True, 60),
    ("0302", "消化内科", True, 50),
    ("0303", "神经内科", True, 55),
    ("0304", "心血管内科", True, 70),
    ("0305", "血液内科", True, 25),
    ("0306", "肾内科", True, 35),
    ("0307", "内分泌科", True, 35),
    ("0401", "普通外科", True, 70),
    ("0402", "神经外科", True, 40),
    ("0403", "骨科", True, 80),
    ("0404", "泌尿外科", True, 40),
    ("0405", "胸外科", True, 30),
    ("0501", "妇科", True, 45),
    ("0502", "产科", True, 50),
    ("0700", "儿科", True, 60),
    ("1000", "眼科", True, 20),
    ("1100", "耳鼻咽喉科", True, 20),
    ("1200", "口腔科", False, 0),
    ("1600", "感染性疾病科", True, 30),
    ("1900", "肿瘤科", True, 45),
    ("2000", "急诊医学科", True, 30),
    ("2100", "康复医学科", True, 40),
    ("2600", "麻醉科", False, 0),
    ("2800", "重症医学科", True, 24),
    ("5000", "中医科", True, 20),
    ("3000", "医学检验科", False, 0),
    ("3100", "病理科", False, 0),
    ("3201", "放射科", False, 0),
    ("3202", "超声医学科", False, 0),
    ("3203", "心电诊断科", False, 0),
    ("Y001", "药学部", False, 0),
    ("A001", "医务科", False, 0),
    ("A002", "转诊服务中心", False, 0),
    ("A003", "质量控制科", False, 0),
)

_LEAD_TCM_DEPARTMENTS = (
    ("5001", "中医内科", True, 60),
    ("5002", "中医外科", True, 35),
    ("5003", "中医妇科", True, 30),
    ("5004", "中医儿科", True, 25),
    ("5006", "针灸科", True, 30),
    ("5007", "推拿科", True, 20),
    ("5008", "中医骨伤科", True, 60),
    ("5009", "中医肛肠科", True, 25),
    ("5011", "治未病科", False, 0),
    ("5012", "中医康复科", True, 40),
    ("0304", "心血管内科", True, 40),
    ("0303", "神经内科", True, 35),
    ("0306", "肾内科", True, 25),
    ("0307", "内分泌科", True, 25),
    ("0401", "普通外科", True, 40),
    ("0502", "产科", True, 25),
    ("0700", "儿科", True, 30),
    ("2000", "急诊医学科", True, 20),
    ("2600", "麻醉科", False, 0),
    ("2800", "重症医学科", True, 12),
    ("3000", "医学检验科", False, 0),
    ("3201", "放射科", False, 0),
    ("3202", "超声医学科", False, 0),
    ("3203", "心电诊断科", False, 0),
    ("Y001", "中药房", False, 0),
    ("Y002", "西药房", False, 0),
    ("A001", "医务科", False, 0),
    ("A002", "转诊服务中心", False, 0),
)

_SECONDARY_DEPARTMENTS = (
    ("0300", "内科", True, 60),
    ("0400", "外科", True, 50),
    ("0500", "妇产科", True, 30),
    ("0700", "儿科", True, 25),
    ("2000", "急诊科", True, 12),
    ("2100", "康复医学科", True, 25),
    ("5000", "中医科", True, 15),
    ("3000", "检验科", False, 0),
    ("3201", "放射科", False, 0),
    ("3202", "超声科", False, 0),
    ("Y001", "药剂科", False, 0),
    ("A001", "医务科", False, 0),
)

HOSPITALS = (
    HospitalSpec(
        "台山市人民医院",
        "市人民医院",
        "rmyy",
        InstitutionKind.GENERAL_HOSPITAL,
        InstitutionLevel.TERTIARY,
        K1,
        MemberRole.LEAD,
        "台城街道",
        "台山市台城街道桥湖路8号",
        1200,
        (
            _C.CT,
            _C.MRI,
            _C.DR,
            _C.ULTRASOUND,
            _C.ENDOSCOPY,
            _C.ECG,
            _C.PCI,
            _C.DIALYSIS,
            _C.ICU,
            _C.LAB,
            _C.PATHOLOGY,
            _C.STROKE_CENTRE,
            _C.CHEST_PAIN_CENTRE,
            _C.OBSTETRICS,
        ),
        _LEAD_GENERAL_DEPARTMENTS,
        2,
        24,
    ),
    HospitalSpec(
        "台山市中医院",
        "市中医院",
        "zyy",
        InstitutionKind.TCM_HOSPITAL,
        InstitutionLevel.SECONDARY,
        K2,
        MemberRole.LEAD,
        "台城街道",
        "台山市台城街道环市中路32号",
        600,
        (_C.CT, _C.MRI, _C.DR, _C.ULTRASOUND, _C.ENDOSCOPY, _C.ECG, _C.DIALYSIS, _C.ICU, _C.LAB, _C.OBSTETRICS),
        _LEAD_TCM_DEPARTMENTS,
        2,
        14,
    ),
    HospitalSpec(
        "台山市第二人民医院",
        "市第二人民医院",
        "dermyy",
        InstitutionKind.GENERAL_HOSPITAL,
        InstitutionLevel.SECONDARY,
        K1,
        MemberRole.BACKBONE,
        "台城街道",
        "台山市台城街道东郊路21号",
        300,
        (_C.CT, _C.DR, _C.ULTRASOUND, _C.ECG, _C.ENDOSCOPY, _C.DIALYSIS, _C.LAB),
        _SECONDARY_DEPARTMENTS,
        1,
        8,
    ),
    HospitalSpec(
        "台山市城区人民医院",
        "城区人民医院",
        "cqrmyy",
        InstitutionKind.GENERAL_HOSPITAL,
        InstitutionLevel.SECONDARY,
        K2,
        MemberRole.BACKBONE,
        "台城街道",
        "台山市台城街道西宁市路15号",
        200,
        (_C.CT, _C.DR, _C.ULTRASOUND, _C.ECG, _C.LAB),
        _SECONDARY_DEPARTMENTS,
        1,
        6,
    ),
)

# A township health centre's departments (乡镇卫生院 / 社区卫生服务中心).
TOWNSHIP_DEPARTMENTS = (
    ("0200", "全科医学科", True, 20),
    ("0300", "内科", True, 15),
    ("0400", "外科", True, 10),
    ("0500", "妇产科", True, 8),
    ("0700", "儿科", True, 6),
    ("5000", "中医科", True, 6),
    ("0100", "公共卫生科", False, 0),
    ("3000", "检验科", False, 0),
    ("3201", "放射科", False, 0),
    ("Y001", "药房", False, 0),
)
VILLAGE_DEPARTMENTS = (("0200", "诊室", True, 0),)

TOWNSHIP_CAPABILITIES = (_C.DR, _C.ULTRASOUND, _C.ECG, _C.LAB)
# 中心卫生院 serve neighbouring towns too: CT and a delivery room.
CENTRAL_TOWNSHIP_CAPABILITIES = (*TOWNSHIP_CAPABILITIES, _C.CT, _C.OBSTETRICS)


@dataclass(frozen=True)
class HealthCentreSpec:
    """A 乡镇卫生院 or the 社区卫生服务中心, with the villages (or communities) it is responsible for."""

    name: str
    slug: str
    town: str
    consortium: str
    kind: str
    villages: tuple[str, ...]
    road: str  # where the centre stands

    @property
    def is_central(self) -> bool:
        return "中心卫生院" in self.name

    @property
    def grid_kind(self) -> str:
        return "community" if self.kind == InstitutionKind.COMMUNITY_CENTRE else "village"


HEALTH_CENTRES = (
    HealthCentreSpec(
        "台城社区卫生服务中心",
        "taicheng",
        "台城街道",
        K1,
        InstitutionKind.COMMUNITY_CENTRE,
        ("城东社区", "城西社区", "城南社区", "城北社区", "桥湖社区", "石花社区", "南坑社区", "东郊社区"),
        "台西路66号",
    ),
    HealthCentreSpec(
        "水步镇卫生院",
        "shuibu",
        "水步镇",
        K1,
        InstitutionKind.TOWNSHIP_CENTRE,
        ("石龙村", "茅莲村", "龙山村", "冈宁村", "密冲村", "大岗村", "井岗村"),
        "水步圩中华路12号",
    ),
    HealthCentreSpec(
        "冲蒌镇卫生院",
        "chonglou",
        "冲蒌镇",
        K1,
        InstitutionKind.TOWNSHIP_CENTRE,
        ("新丰村", "达德村", "八家村", "黄坭岭村", "冲蒌村", "大同村"),
        "冲蒌圩新华路3号",
    ),
    HealthCentreSpec(
        "都斛镇卫生院",
        "duhu",
        "都斛镇",
        K1,
        InstitutionKind.TOWNSHIP_CENTRE,
        ("莘村", "南村", "大纲村", "丰江村", "都斛村", "红岭村"),
        "都斛圩东华路5号",
    ),
    HealthCentreSpec(
        "端芬镇卫生院",
        "duanfen",
        "端芬镇",
        K1,
        InstitutionKind.TOWNSHIP_CENTRE,
        ("山底村", "汀江村", "庙边村", "上泽村", "海阳村", "东宁村", "端芬村"),
        "端芬圩西华路7号",
    ),
    HealthCentreSpec(
        "汶村镇中心卫生院",
        "wencun",
        "汶村镇",
        K1,
        InstitutionKind.TOWNSHIP_CENTRE,
        ("汶村村", "九岗村", "白石村", "高朗村", "东坑村", "沙坦村"),
        "汶村圩文华路9号",
    ),
    HealthCentreSpec(
        "深井镇卫生院",
        "shenjing",
        "深井镇",
        K1,
        InstitutionKind.TOWNSHIP_CENTRE,
        ("深井村", "那马村", "大湾村", "小江村", "东联村"),
        "深井圩建设路2号",
    ),
    HealthCentreSpec(
        "北陡镇卫生院",
        "beidou",
        "北陡镇",
        K1,
        InstitutionKind.TOWNSHIP_CENTRE,
        ("寨门村", "沙咀村", "那琴村", "陡门村", "北陡村"),
        "北陡圩新市路4号",
    ),
    HealthCentreSpec(
        "川岛镇上川卫生院",
        "shangchuan",
        "川岛镇",
        K1,
        InstitutionKind.TOWNSHIP_CENTRE,
        ("沙堤村", "三洲村", "川东村", "川西村", "茶湾村"),
        "上川沙堤港路1号",
    ),
    HealthCentreSpec(
        "大江镇卫生院",
        "dajiang",
        "大江镇",
        K2,
        InstitutionKind.TOWNSHIP_CENTRE,
        ("公益村", "麦巷村", "水楼村", "里新村", "陈边村", "沙冲村", "大江村", "石桥村"),
        "大江圩大江路18号",
    ),
    HealthCentreSpec(
        "四九镇卫生院",
        "sijiu",
        "四九镇",
        K2,
        InstitutionKind.TOWNSHIP_CENTRE,
        ("五十村", "玄潭村", "南村", "上坪村", "四九村", "下坪村"),
        "四九圩中山路6号",
    ),
    HealthCentreSpec(
        "白沙镇中心卫生院",
        "baisha",
        "白沙镇",
        K2,
        InstitutionKind.TOWNSHIP_CENTRE,
        ("朗北村", "西村", "三八村", "冲泮村", "白沙村", "长安村", "马龙村"),
        "白沙圩光明路11号",
    ),
    HealthCentreSpec(
        "三合镇卫生院",
        "sanhe",
        "三合镇",
        K2,
        InstitutionKind.TOWNSHIP_CENTRE,
        ("温泉村", "联安村", "北坑村", "三合村", "大塘村"),
        "三合圩温泉路2号",
    ),
    HealthCentreSpec(
        "斗山镇中心卫生院",
        "doushan",
        "斗山镇",
        K2,
        InstitutionKind.TOWNSHIP_CENTRE,
        ("浮石村", "浮月村", "斗洞村", "六村村", "斗山村", "大湾村", "美塘村"),
        "斗山圩斗山路21号",
    ),
    HealthCentreSpec(
        "赤溪镇卫生院",
        "chixi",
        "赤溪镇",
        K2,
        InstitutionKind.TOWNSHIP_CENTRE,
        ("田头村", "冲口村", "渡头村", "长沙村", "赤溪村"),
        "赤溪圩赤溪路5号",
    ),
    HealthCentreSpec(
        "广海镇中心卫生院",
        "guanghai",
        "广海镇",
        K2,
        InstitutionKind.TOWNSHIP_CENTRE,
        ("海永村", "南湾村", "灯塔村", "广海村", "洋渡村", "海边村"),
        "广海圩人民路8号",
    ),
    HealthCentreSpec(
        "海宴镇卫生院",
        "haiyan",
        "海宴镇",
        K2,
        InstitutionKind.TOWNSHIP_CENTRE,
        ("沙栏村", "海宴村", "五丰村", "丹堂村", "那陈村"),
        "海宴圩华侨路3号",
    ),
    HealthCentreSpec(
        "川岛镇下川卫生院",
        "xiachuan",
        "川岛镇",
        K2,
        InstitutionKind.TOWNSHIP_CENTRE,
        ("川南村", "独湾村", "王府洲村", "挂榜村", "下川村"),
        "下川独湾路2号",
    ),
)

TOWNS = (
    "台城街道",
    "大江镇",
    "水步镇",
    "四九镇",
    "白沙镇",
    "三合镇",
    "冲蒌镇",
    "斗山镇",
    "都斛镇",
    "赤溪镇",
    "端芬镇",
    "广海镇",
    "海宴镇",
    "汶村镇",
    "深井镇",
    "北陡镇",
    "川岛镇",
)

# Streets of 台城 for community addresses (a village address is "<村><n>号").
TAICHENG_STREETS = ("环北大道", "环市中路", "舜德路", "通济路", "台西路", "桥湖路", "石花路", "东风路", "北郊路", "西宁市路")

GRID_POPULATION = (1200, 4500)
TOWNSHIP_DOCTORS = 4
TOWNSHIP_NURSES = 3


@dataclass(frozen=True)
class PersonaSpec:
    """A fixed demo login. `place` is an institution name, or the bureau when `at_authority`."""

    username: str
    full_name: str
    role: str
    place: str
    label: str  # who this is, in Chinese, for the printed table
    department: str = ""
    title: str = ""
    at_authority: bool = False
    superuser: bool = False


PERSONAS = (
    PersonaSpec(
        "lead_doctor",
        "伍志强",
        Role.CLINICIAN,
        "台山市人民医院",
        "专科医生（心血管内科 主任医师）",
        department="心血管内科",
        title=PractitionerTitle.CHIEF_PHYSICIAN,
    ),
    PersonaSpec(
        "township_doctor",
        "黄晓敏",
        Role.CLINICIAN,
        "水步镇卫生院",
        "乡镇卫生院医生（两处执业，页眉可切换）",
        department="全科医学科",
        title=PractitionerTitle.ATTENDING_PHYSICIAN,
    ),
    PersonaSpec(
        "village_doctor",
        "陈国栋",
        Role.VILLAGE_DOCTOR,
        "水步镇石龙村卫生站",
        "村医",
        department="诊室",
        title=PractitionerTitle.VILLAGE_DOCTOR,
    ),
    PersonaSpec(
        "nurse",
        "李秀英",
        Role.NURSE,
        "台山市人民医院",
        "护士（心血管内科）",
        department="心血管内科",
        title=PractitionerTitle.SUPERVISING_NURSE,
    ),
    PersonaSpec(
        "coordinator", "梅丽华", Role.REFERRAL_COORDINATOR, "台山市人民医院", "转诊中心调度员", department="转诊服务中心"
    ),
    PersonaSpec(
        "quality_officer", "甄建明", Role.QUALITY_OFFICER, "台山市人民医院", "质量管理中心质控专员", department="质量控制科"
    ),
    PersonaSpec(
        "pharmacy_officer",
        "刘芳",
        Role.PHARMACY_OFFICER,
        "台山市人民医院",
        "药械管理中心专员",
        department="药学部",
        title=PractitionerTitle.PHARMACIST,
    ),
    PersonaSpec("hr_officer", "谭海燕", Role.HR_OFFICER, "台山市人民医院", "人力资源中心专员"),
    PersonaSpec("consortium_manager", "梁振华", Role.CONSORTIUM_MANAGER, "台山市人民医院", "医联体管理员（人民医院医共体）"),
    PersonaSpec("privacy_officer", "雷静", Role.PRIVACY_OFFICER, "台山市人民医院", "隐私保护专员（紧急授权审核、访问日志）"),
    PersonaSpec("institution_admin", "邝文杰", Role.INSTITUTION_ADMIN, "水步镇卫生院", "机构管理员"),
    PersonaSpec(
        "bureau_supervisor", "伍卫国", Role.BUREAU_SUPERVISOR, AUTHORITY_NAME, "卫健局监管员（只读、汇总数据）", at_authority=True
    ),
    PersonaSpec(
        "tcm_doctor",
        "余德明",
        Role.CLINICIAN,
        "台山市中医院",
        "中医院医生（另一医共体）",
        department="中医内科",
        title=PractitionerTitle.ASSOCIATE_CHIEF_PHYSICIAN,
    ),
    PersonaSpec("tcm_manager", "关志伟", Role.CONSORTIUM_MANAGER, "台山市中医院", "医联体管理员（中医院医共体）"),
    PersonaSpec("sysadmin", "系统管理员", Role.SYSTEM_ADMIN, "", "系统管理员（/admin/）", superuser=True),
)
# township_doctor also practises at a second centre (多点执业): the institution switcher.
SECOND_MEMBERSHIPS = (("township_doctor", Role.CLINICIAN, "冲蒌镇卫生院", "全科医学科"),)

PERSONA_NOTIFICATIONS = {
    "*": ("欢迎使用医联：台山市演示数据已就绪", "演示账号共用同一密码；数据均为虚构。"),
    "lead_doctor": ("心血管内科本周有 3 位下转患者待随访", "请在患者列表中查看。"),
    "township_doctor": ("您在冲蒌镇卫生院也有执业任职", "可在页眉切换当前机构。"),
    "village_doctor": ("本月高血压随访名单已生成", "请按网格安排面对面随访。"),
    "consortium_manager": ("医共体成员单位年度信息核对", "请核对成员单位、网格与六大中心信息。"),
    "privacy_officer": ("访问日志周报已生成", "请在访问日志中查看本周的跨机构访问。"),
    "bureau_supervisor": ("2026 年度医共体考核指标填报开始", "请督促两个医共体按期报送。"),
    "tcm_manager": ("中医院医共体成员单位年度信息核对", "请核对成员单位与网格信息。"),
}

# Taishan's common surnames (伍 甄 邝 雷 梅 谭 …) are far more frequent than nationally; these
# weights replace Faker's national ones for those names, every other surname keeps Faker's weight.
LOCAL_SURNAME_WEIGHTS = {
    "黄": 9.0,
    "李": 7.0,
    "陈": 7.0,
    "伍": 5.0,
    "刘": 4.0,
    "谭": 3.5,
    "余": 3.5,
    "甄": 3.0,
    "梅": 3.0,
    "雷": 3.0,
    "邝": 2.5,
    "关": 2.5,
    "马": 2.0,
    "朱": 2.0,
    "林": 2.0,
    "黎": 1.5,
    "翁": 1.0,
    "容": 1.0,
}

# Residents born elsewhere in Guangdong keep their birthplace's address code (GB/T 2260).
OTHER_ADDRESS_CODES = ("440703", "440704", "440705", "440783", "440784", "440785", "440106", "440304", "445381", "441781")
OTHER_ADDRESS_SHARE = 0.05
MISTYPED_ID_SHARE = 0.005

# Age pyramid in 5-year bands (0–4 … 95–99), shares of the population. Taishan is older than the
# national average (emigration of working-age adults): weights after 2020 census shape for 台山.
AGE_BAND_WEIGHTS = (
    4.0,
    4.6,
    4.8,
    4.4,
    4.0,
    4.6,
    5.6,
    6.2,
    6.8,
    7.6,
    8.0,
    7.4,
    7.0,
    6.0,
    4.8,
    3.4,
    2.3,
    1.3,
    0.5,
    0.1,
)
