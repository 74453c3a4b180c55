"""The shared health record (共享健康档案): encounters, diagnoses, results, reports, prescriptions,
procedures, documents and insurance settlements from every member; the patient 360 view and
mutual recognition of results (结果互认)."""
